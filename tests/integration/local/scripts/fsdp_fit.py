"""A small fit under ``strategy="ddp"`` or ``FSDPStrategy`` for tests/integration/local/test_fsdp_local.py.

Run under ``launch --nproc-per-node 2``. The model is built in ``configure_model`` (as Lightning
users do for FSDP); every rank saves ``--out/final.ckpt`` after fit (a collective under FSDP),
with ``--test`` runs ``trainer.test`` with the same Trainer, and writes ``result_rank{R}.json`` (what its
parameters were during fit, the test loss).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.strategies import FSDPStrategy


class Net(pl.LightningModule):
    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: nn.Module | None = None
        self.during_fit: dict[str, Any] = {}

    def configure_model(self) -> None:
        if self.net is None:
            self.net = nn.Sequential(nn.Linear(4, self.hparams.hidden), nn.Tanh(), nn.Linear(self.hparams.hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # outside the step: inside it FSDP has gathered the parameters of the units running forward
        if not self.during_fit:
            weight = self.net[0].weight
            local = weight.to_local() if hasattr(weight, "to_local") else weight
            self.during_fit = {"param_type": type(weight).__name__, "local_shape": list(local.shape),
                               "full_shape": list(weight.shape)}  # fmt: skip

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [3.0], [0.5]]) + 0.1 * torch.randn(64, 1, generator=g))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ckpt-path", default=None)
    parser.add_argument("--test", action="store_true", help="trainer.test(model) with the same Trainer after fit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(7)
    fsdp = FSDPStrategy(auto_wrap_policy={nn.Linear}, activation_checkpointing_policy={nn.Linear})
    strategy: Any = fsdp if args.strategy == "fsdp" else "ddp"
    # clipping by the norm of all gradients: under FSDP that norm spans every rank's shards
    trainer = pl.Trainer(strategy=strategy, accelerator="cpu", max_epochs=args.epochs, default_root_dir=str(out),
                         gradient_clip_val=0.5,
                         enable_progress_bar=False, enable_model_summary=False, logger=False,
                         enable_checkpointing=False)  # fmt: skip
    model = Net()
    trainer.fit(model, DataLoader(data(), batch_size=4), ckpt_path=args.ckpt_path)
    trainer.save_checkpoint(out / "final.ckpt")
    tested = trainer.test(model, DataLoader(data(), batch_size=8), verbose=False) if args.test else None
    result = {"rank": trainer.global_rank, "strategy": type(trainer.strategy).__name__,
              "during_fit": model.during_fit, "test": tested, "global_step": trainer.global_step}  # fmt: skip
    (out / f"result_rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
