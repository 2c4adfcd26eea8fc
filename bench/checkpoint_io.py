"""Checkpoint save/load cost through the Trainer vs raw torch.save / torch.load.

A ~50M-parameter MLP with Adam state (about 600 MB on disk) is fitted for one step, then,
interleaved (alternating which goes first) ``--repeats`` times:

- save: ``trainer.save_checkpoint(path)`` (builds the Lightning-layout dict, writes a temp
  file, fsyncs it, renames it into place and fsyncs the folder) vs
  ``torch.save({"state_dict": ..., "optimizer_states": [...]}, path)`` (no fsync); also
  ``torch.save(dump_checkpoint(trainer), path)`` alone, to tell our overhead from the disk's;
- load: what ``fit(ckpt_path=...)`` does (checked ``torch.load(weights_only=True)`` +
  ``restore_checkpoint``: module weights, optimizer and scheduler states, callbacks, loop
  progress) vs ``torch.load`` + ``model.load_state_dict`` + ``optimizer.load_state_dict``.

Prints one JSON line with the medians and the ratios. Target (issue 3): <= 1.1x raw for both.

    .venv/bin/python bench/checkpoint_io.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fulmen as pl  # noqa: E402
from fulmen.runtime.checkpoint import load_checkpoint  # noqa: E402
from fulmen.runtime.checkpoint_state import dump_checkpoint, restore_checkpoint  # noqa: E402

WIDTH = 2048
LAYERS = 12  # 12 x (2048*2048 + 2048) = 50.4M parameters


class BigMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-4)


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="folder for the files (default: a temp dir on /tmp)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = BigMLP()
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(4, WIDTH)), batch_size=4))
    optimizer = trainer.optimizers[0]
    params = sum(p.numel() for p in model.parameters())

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ours_path, raw_path = os.path.join(tmp, "fulmen.ckpt"), os.path.join(tmp, "raw.ckpt")

        def save_ours() -> None:
            trainer.save_checkpoint(ours_path)

        def save_raw() -> None:
            torch.save({"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}, raw_path)

        def load_ours() -> None:
            restore_checkpoint(trainer, load_checkpoint(ours_path, map_location="cpu"))

        def load_raw() -> None:
            checkpoint = torch.load(raw_path, map_location="cpu")
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer_states"][0])

        def torch_load_only() -> None:
            torch.load(raw_path, map_location="cpu")

        def save_ours_without_fsync() -> None:
            # the same dict and writer path without durability: separates our overhead from the disk's
            torch.save(dump_checkpoint(trainer), ours_path + ".nofsync")

        save_ours(), save_raw(), load_ours(), load_raw()  # warm-up: page cache, allocator
        times: dict[str, list[float]] = {k: [] for k in ("save_ours", "save_raw", "load_ours", "load_raw", "torch_load", "save_nofsync")}
        for rep in range(args.repeats):
            pairs = [("save_ours", save_ours), ("save_raw", save_raw)]
            loads = [("load_ours", load_ours), ("load_raw", load_raw)]
            if rep % 2:
                pairs.reverse()
                loads.reverse()
            for name, fn in pairs + loads:
                times[name].append(_timed(fn))
            times["torch_load"].append(_timed(torch_load_only))
            times["save_nofsync"].append(_timed(save_ours_without_fsync))
        size = os.path.getsize(ours_path)
        raw_size = os.path.getsize(raw_path)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "bench": "checkpoint_io",
                "params": params,
                "file_mb": round(size / 2**20, 1),
                "raw_file_mb": round(raw_size / 2**20, 1),
                "repeats": args.repeats,
                "save_fulmen_s": round(med["save_ours"], 4),
                "save_raw_s": round(med["save_raw"], 4),
                "save_ratio": round(med["save_ours"] / med["save_raw"], 3),
                "load_fulmen_s": round(med["load_ours"], 4),
                "load_raw_s": round(med["load_raw"], 4),
                "load_ratio": round(med["load_ours"] / med["load_raw"], 3),
                "torch_load_only_s": round(med["torch_load"], 4),
                "save_fulmen_without_fsync_s": round(med["save_nofsync"], 4),
                "fulmen_save_fsyncs": True,
                "target_ratio": 1.1,
            }
        )
    )


if __name__ == "__main__":
    main()
