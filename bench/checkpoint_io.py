"""Checkpoint save/load cost through the Trainer vs raw torch.save / torch.load.

A ~50M-parameter MLP with Adam state (about 600 MB on disk). Interleaved (rotating which goes
first) ``--repeats`` times, medians (and the 90th percentile of the save times: this machine's
disk has slow moments that hit any writer):

- save during training (the target): a callback calls ``trainer.save_checkpoint(path)`` at a
  step boundary, as ModelCheckpoint does, vs ``torch.save({"state_dict": ...,
  "optimizer_states": [...]}, path)`` at the same point (same path each time, and a fresh
  path as a second reference; see ``SaveTimer``). Ours builds the Lightning-layout dict
  and writes a temp file; the fsync, rename and folder fsync finish in the background
  (fulmen/runtime/checkpoint_saver.py), so the figure is how long training is held up. How long
  until the file is durable and in place is reported too (``durable_after_s``), as is the
  same save made outside a run, where it returns only once durable (``save_outside_run``);
  raw ``torch.save`` never fsyncs;
- load: what ``fit(ckpt_path=...)`` does (checked ``torch.load(weights_only=True)`` +
  restoring module weights, optimizer and scheduler states, callbacks, loop progress) vs
  ``torch.load`` + ``model.load_state_dict`` + ``optimizer.load_state_dict``.

- load then one optimizer step, both ways: what a resume costs before training goes on. (Loading
  with ``torch.load(mmap=True)`` looked 3x quicker on the load alone, but Adam's mapped state is
  then copied page by page on its first write: load + step was 2.3-2.5x raw, so fulmen does not.)
- the file alone: ``load_checkpoint`` (``torch.load(weights_only=True)`` plus the CRC32 check of
  every zip record, issue 16.5) vs ``torch.load(weights_only=True)`` of the same file, and the CRC
  check by itself (``crc_check_s``: its CPU cost when nothing else runs; during a load each
  storage is CRC'd as it is read, fulmen/runtime/checkpoint_crc_load.py, or, without ``isal``,
  on a thread pool beside ``torch.load``).

Prints one JSON line with the medians, the minimums (``*_min_s``: the least disturbed repeat;
on a shared machine the median moves with the neighbours' load, by 1.07-1.5x between runs for
the same code) and the ratios of both. Targets (issues 3 and 16.5): <= 1.1x raw for the saves
and the loads. ``--loads-only`` skips the timed saves (a quicker look at the loads).

    .venv/bin/python bench/checkpoint_io.py --repeats 15
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
from fulmen.runtime.checkpoint_crc import start_record_check  # noqa: E402
from fulmen.runtime.checkpoint_saver import wait_for_pending_saves  # noqa: E402
from fulmen.runtime.checkpoint_state import restore_checkpoint  # noqa: E402

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


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SaveTimer(pl.Callback):
    """Times, at step boundaries of a real fit, our save against raw torch.save (interleaved).

    Each timed save starts on a quiet disk: after ours, the background flush is awaited; after
    a raw one, its file is fsynced; both outside the timed region (otherwise one save's
    writeback slows the next, whichever it is). Raw saves go to the same path every time
    (``torch.save`` then truncates the previous file, part of its time) and, as a second
    reference, to a fresh path (the previous file deleted untimed): our save writes a new
    temp file and the rename drops the old one in the background, so it sits between the two.
    """

    def __init__(self, folder: str, repeats: int) -> None:
        self.folder = folder
        self.ours_path = os.path.join(folder, "fulmen.ckpt")
        self.raw_path = os.path.join(folder, "raw.ckpt")
        self.repeats = repeats
        self.times: dict[str, list[float]] = {"ours": [], "raw": [], "raw_fresh": [], "durable": []}

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        rep = trainer.global_step - 2  # step 1: warm-up (page cache, allocator), untimed
        if rep >= self.repeats:
            return
        optimizer = trainer.optimizers[0]

        def record(name: str, seconds: float) -> None:
            if rep >= 0:
                self.times[name].append(seconds)

        def raw_state() -> dict[str, Any]:
            return {"state_dict": pl_module.state_dict(), "optimizer_states": [optimizer.state_dict()]}

        def ours() -> None:
            start = time.perf_counter()
            trainer.save_checkpoint(self.ours_path)
            record("ours", time.perf_counter() - start)
            wait_for_pending_saves()
            record("durable", time.perf_counter() - start)

        def raw() -> None:
            record("raw", _timed(lambda: torch.save(raw_state(), self.raw_path)))
            _fsync_path(self.raw_path)

        def raw_fresh() -> None:
            path = os.path.join(self.folder, f"raw-fresh-{rep}.ckpt")
            record("raw_fresh", _timed(lambda: torch.save(raw_state(), path)))
            _fsync_path(path)
            for name in os.listdir(self.folder):
                if name.startswith("raw-fresh-") and name != os.path.basename(path):
                    os.remove(os.path.join(self.folder, name))

        order = [ours, raw, raw_fresh]
        shift = rep % len(order)
        for fn in order[shift:] + order[:shift]:
            fn()


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dir", default=None, help="folder for the files (default: a temp dir on /tmp)")
    parser.add_argument("--loads-only", action="store_true", help="time the loads only (one untimed save each)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = BigMLP()
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        timer = SaveTimer(tmp, args.repeats)
        trainer = pl.Trainer(
            max_steps=1 if args.loads_only else args.repeats + 2,  # step 1 saves both files, untimed
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[timer],
        )
        trainer.fit(model, DataLoader(TensorDataset(torch.randn(4 * (args.repeats + 2), WIDTH)), batch_size=4))
        optimizer = trainer.optimizers[0]
        ours_path, raw_path = timer.ours_path, timer.raw_path

        def save_ours_outside_run() -> None:
            trainer.save_checkpoint(ours_path)  # not in a run: returns once durable and in place

        def save_raw() -> None:
            torch.save({"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}, raw_path)

        def quiet_disk() -> None:  # untimed: raw's writeback must not slow the next timed save
            _fsync_path(raw_path)

        def load_ours() -> None:
            restore_checkpoint(trainer, load_checkpoint(ours_path, map_location="cpu"))

        def load_raw() -> None:
            checkpoint = torch.load(raw_path, map_location="cpu")
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer_states"][0])

        def torch_load_only() -> None:
            torch.load(raw_path, map_location="cpu")

        # the file alone, same file both ways: what the CRC check adds to a load
        def file_ours() -> None:
            load_checkpoint(ours_path, map_location="cpu")

        def file_raw() -> None:
            torch.load(ours_path, map_location="cpu", weights_only=True)

        def crc_check() -> None:
            assert start_record_check(ours_path).corrupt_record() is None

        # a load's cost can move into the first step (ours maps the file: Adam's state is copied
        # on its first write, not at load), so load + one optimizer step is timed too
        def load_ours_then_step() -> None:
            load_ours()
            optimizer.step()

        def load_raw_then_step() -> None:
            load_raw()
            optimizer.step()

        names = ("outside_ours", "outside_raw", "load_ours", "load_raw", "torch_load", "step_ours", "step_raw",
                 "file_ours", "file_raw", "crc")  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in names}
        for rep in range(0 if args.loads_only else args.repeats):
            pairs = [("outside_ours", save_ours_outside_run), ("outside_raw", save_raw)]
            for name, fn in pairs if rep % 2 == 0 else pairs[::-1]:
                times[name].append(_timed(fn))
                if fn is save_raw:
                    quiet_disk()
        # loads on their own (a load is ~20x quicker than a save: several per save repeat, so
        # that the page-cache churn of 600 MB writes does not decide the figure)
        # (pairs in alternating order, so each follows the other equally often: what the previous
        # load freed changes how quickly the allocator serves the next one)
        load_ours(), load_raw()  # warm-up
        for rep in range(4 * args.repeats):
            loads = [("load_ours", load_ours), ("load_raw", load_raw)]
            for name, fn in loads if rep % 2 == 0 else loads[::-1]:
                times[name].append(_timed(fn))
        for rep in range(2 * args.repeats):
            loads = [("step_ours", load_ours_then_step), ("step_raw", load_raw_then_step)]
            for name, fn in loads if rep % 2 == 0 else loads[::-1]:
                times[name].append(_timed(fn))
        for _ in range(args.repeats):
            times["torch_load"].append(_timed(torch_load_only))
        file_ours(), file_raw()  # warm-up
        for rep in range(4 * args.repeats):
            loads = [("file_ours", file_ours), ("file_raw", file_raw)]
            for name, fn in loads if rep % 2 == 0 else loads[::-1]:
                times[name].append(_timed(fn))
            times["crc"].append(_timed(crc_check))
        size = os.path.getsize(ours_path)
        raw_size = os.path.getsize(raw_path)

    everything = {**times, **{f"fit_{k}": v for k, v in timer.times.items()}}
    med = {k: _median(v) if v else float("nan") for k, v in everything.items()}
    low = {k: min(v) if v else float("nan") for k, v in everything.items()}
    loads = {
        "load_file_fulmen_s": round(med["file_ours"], 4),
        "load_file_raw_s": round(med["file_raw"], 4),
        "load_file_ratio": round(med["file_ours"] / med["file_raw"], 3),
        "load_file_fulmen_min_s": round(low["file_ours"], 4),
        "load_file_raw_min_s": round(low["file_raw"], 4),
        "load_file_ratio_of_mins": round(low["file_ours"] / low["file_raw"], 3),
        "crc_check_s": round(med["crc"], 4),
        "crc_check_min_s": round(low["crc"], 4),
        "load_fulmen_min_s": round(low["load_ours"], 4),
        "load_raw_min_s": round(low["load_raw"], 4),
        "load_ratio_of_mins": round(low["load_ours"] / low["load_raw"], 3),
        "load_then_step_ratio_of_mins": round(low["step_ours"] / low["step_raw"], 3),
    }
    if args.loads_only:
        print(json.dumps({"bench": "checkpoint_io", "params": params, "file_mb": round(size / 2**20, 1),
                          "repeats": args.repeats, "load_fulmen_s": round(med["load_ours"], 4),
                          "load_raw_s": round(med["load_raw"], 4),
                          "load_ratio": round(med["load_ours"] / med["load_raw"], 3),
                          "load_then_step_ratio": round(med["step_ours"] / med["step_raw"], 3),
                          **loads, "target_ratio": 1.1}))  # fmt: skip
        return
    print(
        json.dumps(
            {
                "bench": "checkpoint_io",
                "params": params,
                "file_mb": round(size / 2**20, 1),
                "raw_file_mb": round(raw_size / 2**20, 1),
                "repeats": args.repeats,
                "save_fulmen_s": round(med["fit_ours"], 4),
                "save_raw_s": round(med["fit_raw"], 4),
                "save_ratio": round(med["fit_ours"] / med["fit_raw"], 3),
                "save_raw_fresh_file_s": round(med["fit_raw_fresh"], 4),
                "save_ratio_vs_fresh_file": round(med["fit_ours"] / med["fit_raw_fresh"], 3),
                "save_fulmen_p90_s": round(_p90(timer.times["ours"]), 4),
                "save_raw_p90_s": round(_p90(timer.times["raw"]), 4),
                "durable_after_s": round(med["fit_durable"], 4),
                "save_outside_run_fulmen_s": round(med["outside_ours"], 4),
                "save_outside_run_raw_s": round(med["outside_raw"], 4),
                "save_outside_run_ratio": round(med["outside_ours"] / med["outside_raw"], 3),
                "load_fulmen_s": round(med["load_ours"], 4),
                "load_raw_s": round(med["load_raw"], 4),
                "load_ratio": round(med["load_ours"] / med["load_raw"], 3),
                "load_then_step_fulmen_s": round(med["step_ours"], 4),
                "load_then_step_raw_s": round(med["step_raw"], 4),
                "load_then_step_ratio": round(med["step_ours"] / med["step_raw"], 3),
                "torch_load_only_s": round(med["torch_load"], 4),
                **loads,
                "target_ratio": 1.1,
            }
        )
    )


if __name__ == "__main__":
    main()
