"""A 2-rank fit (``python tracked_fit.py mlflow|wandb <folder>``, Trainer(devices=2)) that logs
to MLFlowLogger (file store) or an offline WandbLogger under ``<folder>``: every rank logs, and
only global rank zero may write a run."""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class Tracked(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main(kind: str, folder: str) -> None:
    if kind == "mlflow":
        logger = pl.loggers.MLFlowLogger(tracking_uri=f"file:{folder}/mlruns", log_model=True)
    else:
        logger = pl.loggers.WandbLogger(save_dir=folder, offline=True, project="ddp")
    data = TensorDataset(torch.randn(16, 4, generator=torch.Generator().manual_seed(0)), torch.randn(16, 1))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=logger, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Tracked(), DataLoader(data, batch_size=2), DataLoader(data, batch_size=4))
    print(f"rank {trainer.global_rank} checkpoint {trainer.checkpoint_callback.best_model_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
