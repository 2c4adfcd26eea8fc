"""One phase of the exact-resume experiment, run as its own process by test_exact_resume.py.

    python resume_script.py OUT_DIR --max-epochs N [--ckpt PATH] [--every-n-steps K]
                            [--kill-at-step S] [--signal-at-step S] [--crash-at-step S] [--hold-renames]

Shuffled data, dropout, Adam and a per-step StepLR. Each optimizer step appends
``{"step", "loss", "lr"}`` to OUT_DIR/steps.jsonl (flushed at once, so a killed process keeps
its records); ``--crash-at-step`` raises once per OUT_DIR (a marker file remembers it, so a
restarted attempt runs on); ``--hold-renames`` makes every background checkpoint rename wait forever (a
disk that has not finished the fsync when the kill comes); the final weights go to OUT_DIR/final.pt and the number of training samples read
to OUT_DIR/reads.txt (one line per process) when the phase ends normally.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import ModelCheckpoint


class Classifier(pl.LightningModule):
    def __init__(self, log_path: str) -> None:
        super().__init__()
        self.log_path = log_path
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        record = {
            "step": self.trainer.global_step,
            "epoch": self.trainer.current_epoch,
            "batch_idx": batch_idx,
            "loss": float(outputs["loss"]),
            "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
        }
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.7)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class SignalAt(pl.Callback):
    """Deliver ``sig`` to this process at the start of the batch after optimizer step ``step``."""

    def __init__(self, step: int, sig: int) -> None:
        self.step = step
        self.sig = sig

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


class CrashOnceAt(pl.Callback):
    """Raise at the start of the batch after optimizer step ``step``, the first time only."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError(f"crash at step {self.step}")


class CountingDataset(TensorDataset):
    """Counts item reads, to show that a resumed epoch does not read its finished batches again."""

    reads = 0

    def __getitem__(self, index: int) -> Any:
        CountingDataset.reads += 1
        return super().__getitem__(index)


def loaders() -> tuple[DataLoader, DataLoader]:
    data = torch.Generator().manual_seed(1234)
    x = torch.randn(96, 8, generator=data)
    y = torch.randint(0, 3, (96,), generator=data)
    train = DataLoader(CountingDataset(x, y), batch_size=8, shuffle=True)  # 12 batches per epoch
    val = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16)
    return train, val


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-epochs", type=int, required=True)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--every-n-steps", type=int, default=None)
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--signal-at-step", type=int, default=None)
    parser.add_argument("--crash-at-step", type=int, default=None)
    parser.add_argument("--hold-renames", action="store_true")
    args = parser.parse_args(argv)
    if args.hold_renames:
        import threading

        from fulmen.runtime import checkpoint_saver

        checkpoint_saver.move_into_place = lambda *a, **k: threading.Event().wait()
    args.out.mkdir(parents=True, exist_ok=True)

    pl.seed_everything(7, verbose=False)
    model = Classifier(str(args.out / "steps.jsonl"))
    callbacks: list[Any] = [
        ModelCheckpoint(
            dirpath=args.out / "ckpts",
            save_top_k=-1,
            save_last=True,
            every_n_train_steps=args.every_n_steps,
        )
    ]
    if args.kill_at_step is not None:
        callbacks.append(SignalAt(args.kill_at_step, signal.SIGKILL))
    if args.signal_at_step is not None:
        callbacks.append(SignalAt(args.signal_at_step, signal.SIGTERM))
    if args.crash_at_step is not None:
        callbacks.append(CrashOnceAt(args.crash_at_step, args.out / "crashed"))
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(args.out),
        num_sanity_val_steps=0,
    )
    train, val = loaders()
    trainer.fit(model, train, val, ckpt_path=args.ckpt)
    torch.save(model.state_dict(), args.out / "final.pt")
    with open(args.out / "reads.txt", "a", encoding="utf-8") as handle:
        handle.write(f"{CountingDataset.reads}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
