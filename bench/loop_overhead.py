"""Per-step overhead of the fulmen Trainer over a hand-written PyTorch loop.

Same model, same pre-built batches, same optimizer; raw loop and Trainer runs are
interleaved, repeated, and the medians compared. The Trainer's time is taken from
``on_train_start`` to ``on_train_end`` (a callback that overrides only those two hooks, so
it costs nothing per step); the whole ``fit()`` time is reported as well.

Prints one JSON line:
  {"small": {"raw_us_per_step", "trainer_us_per_step", "overhead_us_per_step", "ratio",
             "overhead_us_per_step_with_log", "fit_overhead_us_per_step", ...}, "large": {...},
   "calls_per_step": {"fulmen", "fulmen_with_log", "python_over_raw", "python_over_raw_with_log",
                      "fulmen_bytecodes", "fulmen_bytecodes_with_log"}, ...}
Targets: overhead <= 25 us/step without logging, <= 50 us/step with one self.log per step.

``calls_per_step`` does not depend on the machine's load: Python function calls per training
step, counted with ``sys.setprofile`` as the difference between a run of 2N and one of N steps
(so set-up and epoch-end work cancel out). ``fulmen``: calls into fulmen's own code;
``python_over_raw``: all Python calls (torch's included) beyond those of the raw loop;
``fulmen_bytecodes``: bytecode instructions run in fulmen's code (``sys.settrace`` opcode events),
the closest load-independent measure of fulmen's own per-step CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fulmen as pl  # noqa: E402

SIZES = {"small": (32, 64, 2), "large": (512, 1024, 10)}


def _mlp(sizes: tuple[int, int, int]) -> nn.Module:
    torch.manual_seed(0)
    d_in, hidden, d_out = sizes
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def _batches(sizes: tuple[int, int, int], steps: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(batch, sizes[0], generator=gen), torch.randint(0, sizes[2], (batch,), generator=gen))
        for _ in range(steps)
    ]


def raw_loop(sizes: tuple[int, int, int], batches: list[Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of a plain PyTorch loop over ``batches``."""
    model = _mlp(sizes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - start, time.process_time() - cpu


class Classifier(pl.LightningModule):
    def __init__(self, sizes: tuple[int, int, int], log: bool) -> None:
        super().__init__()
        self.net = _mlp(sizes)
        self.do_log = log

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        if self.do_log:
            self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Batches:
    """Pre-built batches as one loader (a bare list would mean "several loaders" to the Trainer)."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:
        return iter(self.batches)


class LoopTimer(pl.Callback):
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.elapsed = (time.perf_counter() - self.start, time.process_time() - self.cpu)


def trainer_loop(sizes: tuple[int, int, int], batches: list[Any], log: bool) -> tuple[tuple[float, float], float]:
    """((wall, CPU) seconds from on_train_start to on_train_end, wall seconds of the whole fit)."""
    timer = LoopTimer()
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],
    )  # fmt: skip
    model = Classifier(sizes, log)
    start = time.perf_counter()
    trainer.fit(model, Batches(batches))
    return timer.elapsed, time.perf_counter() - start


def measure(name: str, steps: int, batch: int, reps: int) -> dict[str, Any]:
    sizes = SIZES[name]
    batches = _batches(sizes, steps, batch)
    runs: dict[str, list[float]] = {k: [] for k in ("raw", "loop", "loop_log", "fit", "fit_log")}
    cpu: dict[str, list[float]] = {k: [] for k in ("raw", "loop", "loop_log")}
    raw_loop(sizes, batches[:16])  # warm-up: allocator, kernels
    trainer_loop(sizes, batches[:16], log=True)
    for _ in range(reps):  # interleaved, so load changes hit every variant alike
        wall, c = raw_loop(sizes, batches)
        runs["raw"].append(wall)
        cpu["raw"].append(c)
        for key, log in (("loop", False), ("loop_log", True)):
            (wall, c), whole = trainer_loop(sizes, batches, log=log)
            runs[key].append(wall)
            cpu[key].append(c)
            runs["fit" + key[4:]].append(whole)
    us = 1e6 / steps
    med = {k: statistics.median(v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "sizes": list(sizes),
        "raw_us_per_step": round(med["raw"] * us, 2),
        "trainer_us_per_step": round(med["loop"] * us, 2),
        "overhead_us_per_step": round((med["loop"] - med["raw"]) * us, 2),
        "ratio": round(med["loop"] / med["raw"], 4),
        "overhead_us_per_step_with_log": round((med["loop_log"] - med["raw"]) * us, 2),
        "ratio_with_log": round(med["loop_log"] / med["raw"], 4),
        "fit_overhead_us_per_step": round((med["fit"] - med["raw"]) * us, 2),
        "fit_overhead_us_per_step_with_log": round((med["fit_log"] - med["raw"]) * us, 2),
        # CPU time is less sensitive than wall time to other processes on a shared machine
        "cpu_overhead_us_per_step": round((med_cpu["loop"] - med_cpu["raw"]) * us, 2),
        "cpu_overhead_us_per_step_with_log": round((med_cpu["loop_log"] - med_cpu["raw"]) * us, 2),
    }


def _python_calls(run: Any, package_dir: str | None) -> int:
    """Python calls made by ``run()`` (only those into ``package_dir`` when given)."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call" and (package_dir is None or frame.f_code.co_filename.startswith(package_dir)):
            count += 1

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return count


def _fulmen_bytecodes(run: Any, package_dir: str) -> int:
    """Bytecode instructions executed by ``run()`` in code under ``package_dir``."""
    count = 0

    def count_opcodes(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "opcode":
            count += 1
        return count_opcodes

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(package_dir):
            return None
        frame.f_trace_opcodes = True
        return count_opcodes

    sys.settrace(trace)
    try:
        run()
    finally:
        sys.settrace(None)
    return count


def calls_per_step(steps: int = 64) -> dict[str, float]:
    """Python calls (fulmen's; all beyond the raw loop's) and fulmen's bytecodes per training step,
    with and without self.log."""
    sizes = SIZES["small"]
    package_dir = os.path.dirname(os.path.abspath(pl.__file__)) + os.sep
    short, long = _batches(sizes, steps, 4), _batches(sizes, 2 * steps, 4)
    trainer_loop(sizes, short, log=True)  # warm-up: lazy imports, first-call caches

    def per_step(run: Any, batches: list[Any], package: str | None) -> float:
        return (_python_calls(lambda: run(batches[: 2 * steps]), package)
                - _python_calls(lambda: run(batches[:steps]), package)) / steps  # fmt: skip

    raw = per_step(lambda b: raw_loop(sizes, b), long, None)
    out = {}
    for suffix, log in (("", False), ("_with_log", True)):
        run = lambda b, log=log: trainer_loop(sizes, b, log=log)  # noqa: E731
        out["fulmen" + suffix] = per_step(run, long, package_dir)
        out["python_over_raw" + suffix] = per_step(run, long, None) - raw
        out["fulmen_bytecodes" + suffix] = (_fulmen_bytecodes(lambda run=run: run(long), package_dir)
                                            - _fulmen_bytecodes(lambda run=run: run(long[:steps]), package_dir)) / steps  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 keeps noise down)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {name: measure(name, args.steps, args.batch, args.reps) for name in SIZES}
    result["calls_per_step"] = calls_per_step()
    result.update(steps=args.steps, batch=args.batch, reps=args.reps, threads=args.threads,
                  torch=torch.__version__)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
