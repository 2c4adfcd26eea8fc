"""Training steps per second through the Trainer: ``torch.compile(model)`` against the eager module.

Two MLPs: "large" is loop_overhead.py's (512 -> 1024 -> 10), "deep" has six 1024-wide blocks
(Linear, LayerNorm, GELU), where fusing the elementwise work has something to gain. For each,
the same pre-built batches go through ``trainer.fit`` four ways: eager, compiled, compiled with
one ``self.log`` per step (a graph break, fulmen/runtime/compiled.py), and, for scale, a
hand-written compiled loop. A callback times every step (batch start to batch end), in wall and
in process CPU time (steadier on a shared machine; with one thread it is the work done); the
first step of a compiled run carries the compilation (forward and backward), reported as
``compile_s`` (the first model's includes inductor's one-time start-up); steps/s is one over
the median step after ``--warmup`` steps, pooled over ``--reps`` interleaved repetitions.

Inductor's on-disk cache goes to a fresh folder unless ``--warm-cache``, so ``compile_s`` is a
first compile. Prints one JSON line:
  {"large": {"eager_steps_per_s", "compiled_steps_per_s", "speedup", "eager_cpu_steps_per_s", ...,
             "cpu_speedup", "compile_s", "compiled_log_steps_per_s", "raw_compiled_steps_per_s", ...},
   "deep": {...}, "steps", "batch", "threads", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fulmen as pl  # noqa: E402
from bench.loop_overhead import Batches  # noqa: E402  (pre-built batches as one loader)


def _mlp(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "large":
        return nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 10))
    blocks = [nn.Sequential(nn.Linear(1024, 1024), nn.LayerNorm(1024), nn.GELU()) for _ in range(6)]
    return nn.Sequential(nn.Linear(512, 1024), *blocks, nn.Linear(1024, 10))


def _batches(steps: int, batch: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(batch, 512, generator=gen).to(device), torch.randint(0, 10, (batch,), generator=gen).to(device))
        for _ in range(steps)
    ]


class Classifier(pl.LightningModule):
    def __init__(self, name: str, log: bool) -> None:
        super().__init__()
        self.net = _mlp(name)
        self.do_log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        if self.do_log:
            self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Times = list[tuple[float, float]]  # (wall, process CPU) seconds per step


class StepTimer(pl.Callback):
    """Wall and CPU seconds of every training step, batch start to batch end (device work included)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: Times = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        _sync(self.device)
        self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        _sync(self.device)
        self.times.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))


def fit_step_times(name: str, batches: list[Any], compiled: bool, log: bool, accelerator: str) -> Times:
    """Per-step seconds of one ``trainer.fit`` (a fresh dynamo state for a compiled one)."""
    torch._dynamo.reset()
    device = batches[0][0].device
    timer = StepTimer(device)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=1, max_epochs=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[timer],
    )  # fmt: skip
    model = Classifier(name, log)
    trainer.fit(torch.compile(model) if compiled else model, Batches(batches))
    return timer.times


def raw_compiled_step_times(name: str, batches: list[Any]) -> Times:
    """Per-step seconds of a hand-written loop over the compiled network (no Trainer)."""
    torch._dynamo.reset()
    device = batches[0][0].device
    net = _mlp(name).to(device)
    compiled = torch.compile(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    times = []
    for x, y in batches:
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        opt.zero_grad()
        nn.functional.cross_entropy(compiled(x), y).backward()
        opt.step()
        _sync(device)
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return times


def _rates(steady: Times) -> tuple[float, float]:
    """(steps/s by wall time, steps/s by CPU time), from the median step."""
    return (round(1.0 / statistics.median(t[0] for t in steady), 1),
            round(1.0 / statistics.median(t[1] for t in steady), 1))  # fmt: skip


def _compile_s(times: Times, warmup: int) -> float:
    """The first step less an ordinary one: dynamo, AOT autograd and the backend for forward and backward."""
    return round(times[0][0] - statistics.median(t[0] for t in times[warmup:]), 2)


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    batches = _batches(args.steps, args.batch, device)
    fit_step_times(name, batches[:8], compiled=False, log=False, accelerator=args.accelerator)  # warm-up: allocator
    runs: dict[str, list[Times]] = {"eager": [], "compiled": [], "compiled_log": [], "raw": []}
    for _ in range(args.reps):  # interleaved, so load changes hit every variant alike
        runs["eager"].append(fit_step_times(name, batches, compiled=False, log=False, accelerator=args.accelerator))
        runs["compiled"].append(fit_step_times(name, batches, compiled=True, log=False, accelerator=args.accelerator))
        runs["compiled_log"].append(fit_step_times(name, batches, compiled=True, log=True,
                                                   accelerator=args.accelerator))  # fmt: skip
        runs["raw"].append(raw_compiled_step_times(name, batches))
    # steady steps of every repetition pooled; the first compiled run's first step is the cold compile
    eager, compiled, compiled_log, raw = (
        [t for times in runs[key] for t in times[args.warmup :]] for key in ("eager", "compiled", "compiled_log", "raw")
    )
    first_compiled, first_compiled_log = runs["compiled"][0], runs["compiled_log"][0]
    (eager_rate, eager_cpu), (compiled_rate, compiled_cpu) = _rates(eager), _rates(compiled)
    (compiled_log_rate, compiled_log_cpu), (raw_rate, raw_cpu) = _rates(compiled_log), _rates(raw)
    return {
        "eager_steps_per_s": eager_rate,
        "compiled_steps_per_s": compiled_rate,
        "speedup": round(compiled_rate / eager_rate, 3),
        # per step CPU time: steadier than wall time when other processes share the cores
        "eager_cpu_steps_per_s": eager_cpu,
        "compiled_cpu_steps_per_s": compiled_cpu,
        "cpu_speedup": round(compiled_cpu / eager_cpu, 3),
        "compile_s": _compile_s(first_compiled, args.warmup),
        "compiled_log_steps_per_s": compiled_log_rate,
        "compiled_log_cpu_steps_per_s": compiled_log_cpu,
        "compile_with_log_s": _compile_s(first_compiled_log, args.warmup),  # the same graph: inductor's cache is warm
        "raw_compiled_steps_per_s": raw_rate,
        "raw_compiled_cpu_steps_per_s": raw_cpu,
        "parameters": sum(p.numel() for p in _mlp(name).parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["large", "deep"], choices=["large", "deep"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the four runs")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of steps/s (recompiles settle)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 keeps noise down)")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--warm-cache", action="store_true", help="keep inductor's usual on-disk cache")
    args = parser.parse_args()
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="fulmen-compile-bench-")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.accelerator == "cuda" else "cpu")
    result: dict[str, Any] = {name: measure(name, args, device) for name in args.models}
    result.update(steps=args.steps, batch=args.batch, reps=args.reps, threads=args.threads, accelerator=args.accelerator,
                  cold_cache=not args.warm_cache, torch=torch.__version__)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
