"""fit -> validate -> test -> predict -> fit again, ``--rounds`` times, in one process per rank.

Every stage after the first re-uses the process group of the first (as in Lightning); the
results land in ``--out``/rerun_rank<R>.json so the test can check them per rank.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class Model(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.layer(x), y), sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.layer(x), y), sync_dist=True)
        self.log("rank", float(self.global_rank), sync_dist=True)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


def trainer(root: Path) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, default_root_dir=str(root),
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      logger=False)


def one_round(root: Path) -> dict[str, Any]:
    model = Model()
    first = trainer(root)
    first.fit(model, loader(), loader())
    val = first.validate(model, loader(), verbose=False)
    test = first.test(model, loader(), verbose=False)
    predictions = first.predict(model, loader())
    again = trainer(root)  # a second Trainer in the same process, same world size
    again.fit(model, loader())
    return {"val_loss": val[0]["val_loss"], "test_loss": test[0]["test_loss"], "rank_mean": test[0]["rank"],
            "predicted": sum(len(p) for p in predictions), "global_step": again.global_step,
            "weight": model.layer.weight.detach().flatten().tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pl.seed_everything(0)
    rounds = [one_round(args.out / "root") for _ in range(args.rounds)]
    rank = int(os.environ.get("RANK", "0"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"rerun_rank{rank}.json").write_text(json.dumps({"rank": rank, "rounds": rounds}))


if __name__ == "__main__":
    main()
