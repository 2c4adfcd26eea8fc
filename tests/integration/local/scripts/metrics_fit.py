"""A 2-rank fit that logs torchmetrics objects on uneven, different data per rank (issue #17).

Each rank builds its own shard (``use_distributed_sampler=False``): the ranks see different
numbers of samples with different accuracies, so the logged epoch accuracy is right only if it
is computed over the states of both ranks (torchmetrics syncs them inside ``compute()``), and a
count logged with ``sync_dist=True, reduce_fx="sum"`` shows whether the value was summed twice.
Rank R writes ``result_rank{R}.json``: the values its callbacks saw at each epoch end.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

# rank -> (samples, of which the stored prediction is right, batch size): equal batch counts in
# training (DDP syncs gradients every step), uneven in validation
TRAIN_SHARDS = {0: (16, 12, 4), 1: (12, 3, 3)}
VAL_SHARDS = {0: (10, 9, 4), 1: (6, 1, 4)}


def shard(n: int, right: int, seed: int) -> TensorDataset:
    """``n`` (prediction, target) pairs; the first ``right`` predictions are correct."""
    target = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed))
    preds = target.clone()
    preds[right:] = 1 - preds[right:]
    return TensorDataset(preds.float().unsqueeze(1), target)


class StoredPredictions(pl.LightningModule):
    """Logs the accuracy of the predictions stored in the data; the layer only makes a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.train_acc = torchmetrics.classification.BinaryAccuracy()
        self.train_samples = torchmetrics.SumMetric()
        self.val_acc = torchmetrics.classification.BinaryAccuracy()
        self.seen: dict[str, list[float]] = {"train_acc": [], "train_samples": [], "val_acc": []}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        preds, target = batch
        self.train_acc(preds.squeeze(1), target)
        self.log("train_acc", self.train_acc, on_step=True, on_epoch=True)
        self.train_samples.update(float(len(target)))
        self.log("train_samples", self.train_samples, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum")
        return self.layer(preds).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        preds, target = batch
        self.val_acc.update(preds.squeeze(1), target)
        self.log("val_acc", self.val_acc)

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        self.seen["train_acc"].append(float(metrics["train_acc_epoch"]))
        self.seen["train_samples"].append(float(metrics["train_samples"]))

    def on_validation_epoch_end(self) -> None:
        self.seen["val_acc"].append(float(self.trainer.callback_metrics["val_acc"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    n, right, batch = TRAIN_SHARDS[rank]
    train = DataLoader(shard(n, right, seed=rank), batch_size=batch)
    n, right, batch = VAL_SHARDS[rank]
    val = DataLoader(shard(n, right, seed=10 + rank), batch_size=batch)
    model = StoredPredictions()
    trainer = pl.Trainer(
        accelerator="cpu", strategy="ddp", max_epochs=2, use_distributed_sampler=False, num_sanity_val_steps=0,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, logger=False,
    )  # fmt: skip
    trainer.fit(model, train, val)
    result = {"rank": trainer.global_rank, "world_size": trainer.world_size, **model.seen}
    (out / f"result_rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
