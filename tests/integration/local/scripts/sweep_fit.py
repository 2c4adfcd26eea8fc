"""A tiny fit for the sweep tests: --lr/--hidden from argparse; a trial fails while FAIL_FILE
names its lr, and sleeps 300 s before training while SLOW_FILE names its hidden size (so a test
can cancel it running); each start and end is noted in NOTES_DIR so the test can check the overlap."""

import argparse
import json
import os
import time
from pathlib import Path

import torch

import fulmen as pl
from fulmen.callbacks import ModelCheckpoint
from fulmen.sweep import current_trial, trial_info

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1.0)
parser.add_argument("--hidden", type=int, default=2)
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()
notes = Path(os.environ["NOTES_DIR"])
index = trial_info()["index"]
(notes / f"start_{index}").write_text(json.dumps({"t": time.time(), "args": vars(args), "trial": current_trial()}))
slow_file = Path(os.environ.get("SLOW_FILE", "/nonexistent"))
if slow_file.exists() and slow_file.read_text().strip() == str(args.hidden):
    time.sleep(300)
fail_file = Path(os.environ["FAIL_FILE"])
if fail_file.exists() and fail_file.read_text().strip() == str(args.lr):
    raise SystemExit(f"trial with lr={args.lr} refuses to train")


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, args.hidden), torch.nn.Linear(args.hidden, 1))

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=args.lr)


torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
loader = torch.utils.data.DataLoader(data, batch_size=8)
trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[ModelCheckpoint(monitor="val_loss")])
trainer.fit(Net(), loader, loader)
(notes / f"end_{index}").write_text(str(time.time()))
