"""SLURM backend latencies on the local test cluster (../shared/slurm must be running).

Measures, ``--repeats`` times each (median reported):

- submit -> first step: from the start of ``launch --cluster slurm`` (a subprocess, as a user
  would type it) to the first training step of rank 0 (a tiny fulmen Trainer fit);
- signal -> requeued run: from ``scancel --signal=USR2`` on a running fit to the moment the
  requeued run's rank 0 starts again (SLURM holds a requeued job ~11 s: cred_expire=10).

Prints one JSON line. The machine has 2 cores and may be shared: figures are noisy.

    .venv/bin/python bench/slurm_latency.py --repeats 3 [--nodes 2 --nproc-per-node 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """\
import os, sys, time, torch
import fulmen as pl
from torch.utils.data import DataLoader, TensorDataset
n, d, sleep = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
class M(pl.LightningModule):
    def __init__(self):
        super().__init__(); self.l = torch.nn.Linear(4, 1)
    def training_step(self, b, i):
        if self.trainer.is_global_zero and self.trainer.global_step == 0:
            print(f"FIRST_STEP {time.time():.3f}", flush=True)
        time.sleep(sleep)
        return torch.nn.functional.mse_loss(self.l(b[0]), b[1])
    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.01)
    def train_dataloader(self):
        x = torch.randn(400, 4); return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
pl.Trainer(accelerator="cpu", devices=d, num_nodes=n, max_epochs=1, enable_progress_bar=False,
           enable_model_summary=False, logger=False, enable_checkpointing=False).fit(M())
"""


def wait_for(path: Path, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            match = re.search(pattern, path.read_text(), re.M)
            if match:
                return match
        time.sleep(0.05)
    raise TimeoutError(f"{pattern!r} not in {path} after {timeout}s")


def one_round(folder: Path, nodes: int, per_node: int, env: dict[str, str]) -> tuple[float, float]:
    folder.mkdir(parents=True)
    (folder / "fit.py").write_text(SCRIPT)
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "fulmen.launcher", "--cluster", "slurm", "--nodes", str(nodes),
         "--nproc-per-node", str(per_node), "fit.py", str(nodes), str(per_node), "0.1"],
        cwd=folder, env=env, capture_output=True, text=True, check=True,
    ).stderr  # the launcher's own lines ("Submitted SLURM job N") are on stderr
    job_id = re.search(r"Submitted SLURM job (\d+)", out).group(1)
    run_dir = next((folder / "fulmen_runs").iterdir())
    log = run_dir / "logs" / "rank_0.log"
    first_step = float(wait_for(log, r"^FIRST_STEP ([\d.]+)", 300).group(1)) - t0
    signalled = time.time()
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    requeued = float(wait_for(log, r"restart 1 .*started at ([\d.]+)", 300).group(1)) - signalled
    subprocess.run(["scancel", job_id], check=False)
    sys.path.insert(0, str(REPO))
    from fulmen.slurm.submit import job_has_ended

    while job_has_ended(job_id) is None:  # its ranks still write into the folder
        time.sleep(0.5)
    return first_step, requeued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--nproc-per-node", type=int, default=1)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    firsts, requeues = [], []
    with tempfile.TemporaryDirectory(prefix="fulmen-slurm-bench-", ignore_cleanup_errors=True) as tmp:
        env["XDG_STATE_HOME"] = str(Path(tmp) / "state")
        for i in range(args.repeats):
            first, requeue = one_round(Path(tmp) / f"round{i}", args.nodes, args.nproc_per_node, env)
            firsts.append(first)
            requeues.append(requeue)
    print(json.dumps({
        "bench": "slurm_latency",
        "nodes": args.nodes,
        "ranks_per_node": args.nproc_per_node,
        "repeats": args.repeats,
        "submit_to_first_step_s": round(statistics.median(firsts), 2),
        "signal_to_requeued_run_s": round(statistics.median(requeues), 2),
        "submit_to_first_step_all": [round(x, 2) for x in firsts],
        "signal_to_requeued_run_all": [round(x, 2) for x in requeues],
    }))


if __name__ == "__main__":
    main()
