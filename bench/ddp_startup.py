"""Startup cost of a 2-rank tiny fit: ``launch`` + fulmen Trainer vs ``torchrun`` + raw DDP.

Runs the two interleaved (alternating which goes first), ``--repeats`` times each, and prints
one JSON line: median wall time of each, their ratio, and the median time from starting the
command to rank 0's first training step. Target (issue 4): ratio <= 1.05.

    .venv/bin/python bench/ddp_startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from fulmen.jobs import ports  # noqa: E402


def _env(first_step_file: Path, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "FULMEN_RUN_DIR")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["BENCH_FIRST_STEP_FILE"] = str(first_step_file)
    env["XDG_STATE_HOME"] = str(state)
    return env


def timed(cmd: list[str], tmp: Path) -> tuple[float, float]:
    """(wall seconds, seconds from start to rank 0's first step) of one run."""
    marker = tmp / "first_step"
    marker.unlink(missing_ok=True)
    start_wall, start = time.time(), time.perf_counter()
    done = subprocess.run(cmd, env=_env(marker, tmp / "state"), cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit {done.returncode}:\n{done.stderr[-2000:]}")
    return wall, float(marker.read_text()) - start_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fulmen-bench-") as name:
        tmp = Path(name)
        launch = [sys.executable, "-m", "fulmen.launcher", "launch", "--nproc-per-node", "2",
                  "--run-root", str(tmp / "runs"), str(HERE / "ddp_startup_fit.py")]
        samples: dict[str, list[tuple[float, float]]] = {"launch": [], "torchrun": []}
        for i in range(args.repeats):
            port, _ = ports.choose_port(f"bench-{i}-{time.time()}", environ={})
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", str(port), str(HERE / "ddp_startup_raw.py")]
            order = [("launch", launch), ("torchrun", torchrun)]
            for key, cmd in order if i % 2 == 0 else order[::-1]:
                samples[key].append(timed(cmd, tmp))
            ports.release_port(port)
    med = {key: (statistics.median(w for w, _ in runs), statistics.median(f for _, f in runs))
           for key, runs in samples.items()}
    print(json.dumps({
        "bench": "ddp_startup",
        "repeats": args.repeats,
        "launch_fulmen_s": round(med["launch"][0], 3),
        "torchrun_raw_ddp_s": round(med["torchrun"][0], 3),
        "ratio": round(med["launch"][0] / med["torchrun"][0], 3),
        "launch_to_first_step_fulmen_s": round(med["launch"][1], 3),
        "launch_to_first_step_torchrun_s": round(med["torchrun"][1], 3),
        "target_ratio": 1.05,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
