"""A minimal classifier: the smallest complete fulmen program.

A small MLP learns to tell four classes of points apart. The data are made right here (no
download): four Gaussian clusters in 16 dimensions with overlapping tails, so the task is easy
but not trivial. ``Trainer.fit`` trains with validation after every epoch, ``Trainer.test``
measures accuracy on held-out data, and the last line prints that accuracy.

    python examples/minimal_classifier.py             # ~10 s on 2 CPU cores
    tensorboard --logdir lightning_logs                # curves of train_loss, val_loss, val_acc

The script uses only the PyTorch Lightning API: change ``import fulmen as pl`` to
``import pytorch_lightning as pl`` and it runs under Lightning too.
"""

from __future__ import annotations

import argparse

import torch
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
    """Two-layer MLP; logs loss and accuracy for training, validation and test."""

    def __init__(self, hidden: int = 64, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(DIM, hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES))
        self.example_input_array = torch.zeros(1, DIM)  # adds In/Out sizes to the model summary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), prog_bar=True)
        self.log(f"{stage}_acc", (logits.argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train a small MLP classifier on synthetic clusters.")
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train = DataLoader(make_clusters(4096, generator), batch_size=64, shuffle=True)
    val = DataLoader(make_clusters(1024, generator), batch_size=256)
    test = DataLoader(make_clusters(2048, generator), batch_size=256)

    model = Classifier()
    trainer = pl.Trainer(max_epochs=args.max_epochs, log_every_n_steps=10)
    trainer.fit(model, train, val)
    results = trainer.test(model, test)[0]

    print(f"\nLogs and checkpoints: {trainer.log_dir}")
    print(f"Final test accuracy: {results['test_acc']:.3f} (chance level: {1 / NUM_CLASSES:.3f})")
    return results


if __name__ == "__main__":
    main()
