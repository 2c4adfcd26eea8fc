"""Small models and data shared by the runtime-core tests (Lightning's BoringModel, in spirit)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import fulmen as pl

TRAINER_QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


class RandomDataset(Dataset):
    """``length`` random vectors of ``size`` (fixed at construction)."""

    def __init__(self, size: int = 32, length: int = 64, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.data = torch.randn(length, size, generator=gen)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.data[index]


class BoringModel(pl.LightningModule):
    """A linear layer trained to output zeros; logs nothing unless a test asks."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def loss(self, out: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(out, torch.ones_like(out))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return {"loss": self.loss(self(batch))}

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return {"x": self.loss(self(batch))}

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        return {"y": self.loss(self(batch))}

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self(batch)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.layer.parameters(), lr=0.1)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64), batch_size=2)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64), batch_size=2)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64), batch_size=2)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, 64), batch_size=2)


def regression_data(n: int = 64, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.1 * torch.randn(n, 1, generator=gen)
    return TensorDataset(x, y)
