"""Small classes the CLI tests build by import path (jsonargparse resolves ``--model=ClassName``)."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class TinyRegressor(pl.LightningModule):
    """A linear regression; ``hidden`` and ``lr`` are CLI options."""

    def __init__(self, hidden: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.mse_loss(self.net(x), y))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.net(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class DeepRegressor(TinyRegressor):
    """A subclass with an option of its own (subclass mode)."""

    def __init__(self, hidden: int = 8, lr: float = 0.1, depth: int = 2) -> None:
        super().__init__(hidden=hidden, lr=lr)
        self.depth = depth


class TinyData(pl.LightningDataModule):
    """8 samples of y = x0 - x1 for every stage."""

    def __init__(self, batch_size: int = 4) -> None:
        super().__init__()
        self.batch_size = batch_size
        x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
        self.data = TensorDataset(x, (x[:, :1] - x[:, 1:]))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)

    val_dataloader = test_dataloader = predict_dataloader = train_dataloader


def quiet_args(root: Any) -> list[str]:
    """Trainer options that keep a test run small and silent, its files under ``root``."""
    return [
        "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={root}", "--trainer.max_epochs=1",
    ]  # fmt: skip
