"""LightningCLI: the whole command line of a training script from its classes' ``__init__`` arguments.

Every argument of ``BlobClassifier``, ``BlobDataModule`` and the Trainer becomes an option
(``--model.hidden``, ``--data.batch_size``, ``--trainer.max_epochs``), a YAML file can hold them
(``--config``), and the run's full configuration is saved next to its logs as ``config.yaml``.

    python examples/lightning_cli.py fit --config examples/lightning_cli.yaml
    python examples/lightning_cli.py fit --config examples/lightning_cli.yaml --model.lr=0.02 --trainer.max_epochs=3
    python examples/lightning_cli.py fit --print_config          # every option with its value
    python examples/lightning_cli.py fit --optimizer=SGD --optimizer.lr=0.1   # optimizer from the command line
    launch --nproc-per-node 2 examples/lightning_cli.py fit --config examples/lightning_cli.yaml

The data: four Gaussian blobs in the plane, generated in memory (no download).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.cli import LightningCLI

CENTERS = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])


class BlobDataModule(pl.LightningDataModule):
    """Four classes of 2-d points around the corners of a square."""

    def __init__(self, num_points: int = 2000, batch_size: int = 64, noise: float = 0.8, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(self.hparams.seed)
        labels = torch.randint(0, len(CENTERS), (self.hparams.num_points,), generator=generator)
        points = CENTERS[labels] + self.hparams.noise * torch.randn(self.hparams.num_points, 2, generator=generator)
        split = int(0.8 * self.hparams.num_points)
        self.train_set = TensorDataset(points[:split], labels[:split])
        self.val_set = TensorDataset(points[split:], labels[split:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class BlobClassifier(pl.LightningModule):
    """A small MLP; ``hidden`` and ``lr`` are command-line options through LightningCLI."""

    def __init__(self, hidden: int = 32, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, len(CENTERS)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        accuracy = (self.net(x).argmax(dim=1) == y).float().mean()
        self.log("val_acc", accuracy, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def on_fit_end(self) -> None:
        accuracy = float(self.trainer.callback_metrics["val_acc"])
        self.print(f"Final validation accuracy: {accuracy:.3f} (world size {self.trainer.world_size})")


def main() -> None:
    LightningCLI(BlobClassifier, BlobDataModule)


if __name__ == "__main__":
    main()
