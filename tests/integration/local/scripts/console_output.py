"""Prints what a training script prints, to check that the console shows rank 0's output as it is.

``python console_output.py [--devices N] [--fail-rank R]``: with ``--devices`` a quiet
``Trainer(devices=N)`` fits first (``python`` alone then starts the ranks itself); then every
rank writes to stdout and stderr: unicode, a progress line redrawn with ``\\r``, a line written
in pieces, and a last stdout line without newline. Ranks other than 0 also name a (harmless)
error on stderr, which the launcher shows prefixed; ``--fail-rank R`` makes rank R raise.
"""

import argparse
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--devices", type=int, default=0)
parser.add_argument("--fail-rank", type=int, default=-1)
args = parser.parse_args()

if args.devices:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as pl

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)

    pl.Trainer(devices=args.devices, accelerator="cpu", max_epochs=1, enable_progress_bar=False,
               enable_model_summary=False, logger=False, enable_checkpointing=False).fit(Tiny())

rank = int(os.environ.get("RANK", "0"))
print("héllo wörld ✓ 中文 🚀")
print("starting", file=sys.stderr)
if rank != 0:  # while rank 0 is in the middle of its progress line
    print(f"ResourceWarningError: rank {rank} saw a slow disk (not fatal)", file=sys.stderr, flush=True)
for step in range(6):
    sys.stderr.write(f"\rtraining {step * 20:3d}%|{'█' * step:<5}| ü")
    sys.stderr.flush()
    time.sleep(0.1)
sys.stderr.write("\n")
sys.stdout.write("a line written ")
sys.stdout.flush()
time.sleep(0.05)
sys.stdout.write("in two pieces\r\n")
print(f"this is rank {rank}")
sys.stdout.write("the end, without newline")
sys.stdout.flush()
if args.fail_rank == rank:
    time.sleep(1.0 if rank else 0.0)  # rank 0 has finished by then (a failure stops the others)
    raise ValueError(f"boom from rank {rank}")
