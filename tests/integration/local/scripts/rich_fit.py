"""A fit with RichProgressBar and RichModelSummary (test_rich_console.py); ``--ddp``: devices=2."""

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import RichModelSummary, RichProgressBar


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        loss = self.net(batch[0]).pow(2).mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


if __name__ == "__main__":
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2 if "--ddp" in sys.argv else 1,
        logger=False,
        enable_checkpointing=False,
        callbacks=[RichProgressBar(), RichModelSummary()],
    )
    trainer.fit(Net(), DataLoader(TensorDataset(torch.randn(32, 8)), batch_size=4))
    print(f"rank {trainer.global_rank} done")
