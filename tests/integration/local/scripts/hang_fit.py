"""A fit in which one rank hangs inside training_step (issue 16.6: the progress watchdog).

``--hang-rank R --hang-at-step S``: rank R sleeps forever in the training_step after step S,
on the first attempt only (``FULMEN_RESTART_COUNT`` 0), so a restart completes.
``--hanging-marker PATH``: the hung rank creates PATH just before it sleeps (a test's cue to
signal the launcher). ``--epochs`` (default 1). ``--weights-out PATH``: rank 0 saves the final
weights there (the same seed every run: an interrupted and resumed run can be compared).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class Net(pl.LightningModule):
    def __init__(self, hang_rank: int, hang_at_step: int, hanging_marker: str | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.hang_rank, self.hang_at_step = hang_rank, hang_at_step
        self.hanging_marker = hanging_marker

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        first_attempt = os.environ.get("FULMEN_RESTART_COUNT", "0") == "0"
        if first_attempt and self.global_rank == self.hang_rank and self.global_step == self.hang_at_step:
            if self.hanging_marker:
                open(self.hanging_marker, "w").close()
            while True:
                time.sleep(3600)  # HANG HERE
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hang-rank", type=int, default=-1)
    parser.add_argument("--hang-at-step", type=int, default=2)
    parser.add_argument("--hanging-marker", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--weights-out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=4)
    trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(Net(args.hang_rank, args.hang_at_step, args.hanging_marker), data)
    if args.weights_out and trainer.global_rank == 0:
        torch.save(trainer.lightning_module.state_dict(), args.weights_out)
    print(f"rank {trainer.global_rank} finished at step {trainer.global_step}", flush=True)


if __name__ == "__main__":
    main()
