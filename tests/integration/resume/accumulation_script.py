"""One phase of the preemption-during-accumulation experiment (issue 16.2), one process per rank.

    python accumulation_script.py OUT_DIR [--signal-epoch E --signal-batch B [--signal-rank R]]
                                  [--config-hparams]

Run directly (one process, ``FULMEN_RUN_DIR`` set by the test) or under ``launch
--nproc-per-node 2`` (gloo DDP). ``accumulate_grad_batches=3`` over 7 batches per rank and epoch
(windows [0 1 2] [3 4 5] [6]: the last is partial), two epochs, shuffled data, dropout, Adam.
With ``--signal-*`` rank R sends itself SIGTERM when batch B of epoch E starts. Each rank
appends ``[epoch, batch_idx, global_step]`` to OUT_DIR/batches_rank<R>.jsonl after every batch
(with the seconds since the signal once it came), and writes its final weights to
OUT_DIR/final_rank<R>.pt when training ends normally. ``--config-hparams`` makes the model
``save_hyperparameters()`` an ``argparse.Namespace`` and a dataclass of this script (issue 16.3)
and record the types its ``on_load_checkpoint`` sees to OUT_DIR/loaded_hparams.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

ACCUMULATE = 3
BATCH_SIZE = 4
BATCHES_PER_RANK = 7


@dataclass
class Config:
    hidden: int = 16
    data: Path = Path("/nowhere")


class Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=0.01)


class ConfiguredRegressor(Regressor):
    def __init__(self, args: argparse.Namespace, config: Config, out: Path) -> None:
        super().__init__()
        self.save_hyperparameters()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        seen = {k: type(v).__name__ for k, v in checkpoint["hyper_parameters"].items()}
        (self.hparams.out / "loaded_hparams.json").write_text(json.dumps(seen))


class Recorder(pl.Callback):
    """Signals itself at the given batch; records every finished batch."""

    def __init__(self, out: Path, signal_at: tuple[int, int] | None) -> None:
        self.out = out
        self.signal_at = signal_at
        self.signalled_at: float | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.signal_at == (trainer.current_epoch, batch_idx):
            self.signalled_at = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        record: list[Any] = [trainer.current_epoch, batch_idx, trainer.global_step]
        if self.signalled_at is not None:
            record.append(time.monotonic() - self.signalled_at)
        with open(self.out / f"batches_rank{trainer.global_rank}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--signal-epoch", type=int, default=None)
    parser.add_argument("--signal-batch", type=int, default=None)
    parser.add_argument("--signal-rank", type=int, default=0)
    parser.add_argument("--config-hparams", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    signal_at = None
    if args.signal_batch is not None and rank == args.signal_rank:
        signal_at = (args.signal_epoch or 0, args.signal_batch)

    pl.seed_everything(3, verbose=False)
    data = torch.Generator().manual_seed(11)
    n = BATCH_SIZE * BATCHES_PER_RANK * world_size
    x = torch.randn(n, 8, generator=data)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=data)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=True)
    model = ConfiguredRegressor(args, Config(), args.out) if args.config_hparams else Regressor()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=world_size,
        strategy="ddp" if world_size > 1 else "auto",
        max_epochs=2,
        accumulate_grad_batches=ACCUMULATE,
        callbacks=[Recorder(args.out, signal_at)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    torch.save(model.state_dict(), args.out / f"final_rank{trainer.global_rank}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
