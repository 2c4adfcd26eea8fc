"""Small modules for the tuner tests: a learnable regression with an ``lr`` and a
``batch_size``, and a switch that makes batches above a size "run out of CUDA memory"."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

QUIET: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def regression(n: int = 128) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5], [1.0]]) + 0.1 * torch.randn(n, 1, generator=generator)
    return TensorDataset(x, y)


class TunableModel(pl.LightningModule):
    """``lr`` and ``batch_size`` attributes; batches larger than ``oom_above`` raise ``oom``."""

    def __init__(self, lr: float = 0.01, batch_size: int = 2, oom_above: int | None = None,
                 oom: BaseException | None = None) -> None:  # fmt: skip
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.lr = lr
        self.batch_size = batch_size
        self.oom_above = oom_above
        self.oom = oom or RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batch_sizes: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.batch_sizes.append(len(x))
        if self.oom_above is not None and len(x) > self.oom_above:
            raise self.oom
        return F.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.mse_loss(self.layer(x), y))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(regression(), batch_size=self.batch_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
