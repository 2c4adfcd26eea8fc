"""The fulmen side of bench/ddp_startup.py: a 2-rank tiny fit through the Trainer.

Same work as bench/ddp_startup_raw.py (64 samples, 2 epochs, Linear(16, 1), SGD), no logger,
no checkpoints, no progress bar: what is measured is the framework's own cost. Rank 0 writes
the wall time of its first training step to ``$BENCH_FIRST_STEP_FILE``.
"""

from __future__ import annotations

import os
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)
        self._first = True

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self._first and self.global_rank == 0 and os.environ.get("BENCH_FIRST_STEP_FILE"):
            with open(os.environ["BENCH_FIRST_STEP_FILE"], "w") as f:
                f.write(repr(time.time()))
        self._first = False
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), y)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(64, 16, generator=g), torch.randn(64, generator=g))
        return DataLoader(data, batch_size=8, shuffle=True)


if __name__ == "__main__":
    pl.seed_everything(0)
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(Tiny())
