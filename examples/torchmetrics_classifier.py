"""Logging torchmetrics objects: accuracy and F1 as the Lightning documentation writes them.

A small MLP classifies points from four Gaussian clusters (made here, no download). The metrics
are torchmetrics objects held by the module: ``self.log("train_acc", self.train_acc)`` after
calling the metric logs the batch value on every step and, once per epoch, the metric's
``compute()`` over the whole epoch, then resets it; validation only calls ``update()`` and logs
the collection once per epoch with ``self.log_dict``. Under DDP the epoch values are computed
over every rank's data (torchmetrics synchronises its states), so no ``sync_dist`` is needed.

    pip install "fulmen[metrics]"                  # torchmetrics is an optional extra
    python examples/torchmetrics_classifier.py     # a few seconds on 2 CPU cores

Change ``import fulmen as pl`` to ``import pytorch_lightning as pl`` and it runs under Lightning.
"""

from __future__ import annotations

import argparse

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

NUM_CLASSES = 4
DIM = 16


def make_clusters(n: int, generator: torch.Generator) -> TensorDataset:
    """``n`` points from four Gaussian clusters whose centres sit 3 units from the origin."""
    centres = torch.randn(NUM_CLASSES, DIM, generator=torch.Generator().manual_seed(0))
    centres = 3.0 * centres / centres.norm(dim=1, keepdim=True)
    labels = torch.randint(NUM_CLASSES, (n,), generator=generator)
    points = centres[labels] + 1.0 * torch.randn(n, DIM, generator=generator)
    return TensorDataset(points, labels)


class Classifier(pl.LightningModule):
    """Two-layer MLP with torchmetrics accuracy (train) and a MetricCollection (validation, test)."""

    def __init__(self, hidden: int = 64, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(DIM, hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES))
        # metrics are attributes (submodules): they move with the module, and self.log finds them
        self.train_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=NUM_CLASSES)
        evaluation = torchmetrics.MetricCollection({
            "acc": torchmetrics.classification.MulticlassAccuracy(num_classes=NUM_CLASSES),
            "f1": torchmetrics.classification.MulticlassF1Score(num_classes=NUM_CLASSES),
        })  # fmt: skip
        self.val_metrics = evaluation.clone(prefix="val_")
        self.test_metrics = evaluation.clone(prefix="test_")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)  # forward: this batch's accuracy, and accumulates the epoch's
        self.log("train_acc", self.train_acc, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self(x), y)  # update only: computed once, at the epoch end
        self.log_dict(self.val_metrics, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(self(x), y)
        self.log_dict(self.test_metrics)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train a small MLP and log torchmetrics objects.")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train = DataLoader(make_clusters(2048, generator), batch_size=64, shuffle=True)
    val = DataLoader(make_clusters(512, generator), batch_size=128)
    test = DataLoader(make_clusters(1024, generator), batch_size=128)

    model = Classifier()
    trainer = pl.Trainer(max_epochs=args.max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, train, val)
    train_acc = float(trainer.callback_metrics["train_acc_epoch"])  # test() starts its own metrics
    results = trainer.test(model, test, verbose=False)[0]
    print(f"Last epoch's train accuracy: {train_acc:.3f}")
    print(f"Final test F1: {results['test_f1']:.3f}")
    print(f"Final test accuracy: {results['test_acc']:.3f} (chance level: {1 / NUM_CLASSES:.3f})")
    return results


if __name__ == "__main__":
    main()
