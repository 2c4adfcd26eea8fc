"""A LightningDataModule: data preparation separated from the model.

``prepare_data()`` runs once (on one process per node) and writes the dataset file into the data
folder, skipping the work when the file is already there; ``setup(stage)`` runs on every process
and reads the file into train/val/test splits; the ``*_dataloader()`` methods hand out loaders.
The Trainer calls them in that order for ``fit`` and again for ``test``.

The dataset: 2-d points labelled by whether they fall inside a ring (a non-linear boundary),
saved as a CSV file like a real downloaded dataset would be.

    python examples/datamodule.py --data-dir ./data
"""

from __future__ import annotations

import argparse
import csv
import os

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

import fulmen as pl


class RingDataModule(pl.LightningDataModule):
    FILE_NAME = "ring.csv"

    def __init__(self, data_dir: str = "./data", batch_size: int = 64, num_points: int = 6000) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.path = os.path.join(data_dir, self.FILE_NAME)

    def prepare_data(self) -> None:
        """Write the dataset file once; never assign state here (it runs on one process only)."""
        if os.path.exists(self.path):
            print(f"Dataset found: {self.path}")
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        generator = torch.Generator().manual_seed(1234)
        points = torch.rand(self.hparams.num_points, 2, generator=generator) * 4 - 2
        radius = points.norm(dim=1)
        # inside the ring 0.6 < r < 1.7 -> class 1: about half of the square's area
        labels = ((radius > 0.6) & (radius < 1.7)).long()
        tmp_path = self.path + ".tmp"
        with open(tmp_path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["x", "y", "label"])
            writer.writerows((f"{x:.6f}", f"{y:.6f}", int(c)) for (x, y), c in zip(points.tolist(), labels))
        os.replace(tmp_path, self.path)  # a crash never leaves half a file behind
        print(f"Dataset written: {self.path} ({self.hparams.num_points} points)")

    def setup(self, stage: str) -> None:
        """Read the file and split it 70/15/15 (the same split on every process and every call)."""
        with open(self.path, newline="") as file:
            rows = list(csv.DictReader(file))
        features = torch.tensor([[float(r["x"]), float(r["y"])] for r in rows])
        labels = torch.tensor([int(r["label"]) for r in rows])
        dataset = TensorDataset(features, labels)
        n_train, n_val = int(0.7 * len(dataset)), int(0.15 * len(dataset))
        sizes = [n_train, n_val, len(dataset) - n_train - n_val]
        self.train_set, self.val_set, self.test_set = random_split(
            dataset, sizes, generator=torch.Generator().manual_seed(0)
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=512)


class RingClassifier(pl.LightningModule):
    def __init__(self, hidden: int = 64, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _accuracy(self, batch: tuple[torch.Tensor, torch.Tensor], name: str) -> None:
        x, y = batch
        self.log(name, (self(x).argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "val_acc")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._accuracy(batch, "test_acc")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Train from a LightningDataModule that prepares a CSV dataset.")
    parser.add_argument("--data-dir", default="./data")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    datamodule = RingDataModule(data_dir=args.data_dir)
    model = RingClassifier()
    trainer = pl.Trainer(max_epochs=args.max_epochs, log_every_n_steps=20)
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(model, datamodule=datamodule)[0]

    inside = float(datamodule.test_set.dataset.tensors[1].float().mean())
    majority = max(inside, 1 - inside)
    print(f"\nLogs: {trainer.log_dir}")
    print(f"Final test accuracy: {results['test_acc']:.3f} (always guessing the larger class: {majority:.3f})")
    return results


if __name__ == "__main__":
    main()
