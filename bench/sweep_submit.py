"""Submitting a 100-trial sweep to the local SLURM cluster (../shared/slurm must be running).

Measures, from the start of ``launch --cluster slurm --sweep i='range(0, 99, 100)' --parallel 1``
(a subprocess, as a user would type it) to the moment squeue lists all 100 elements of its one
array job; then cancels the array. Prints one JSON line:
``{"trials": 100, "array_jobs": 1, "launch_s": ..., "all_listed_s": ...}``.

    .venv/bin/python bench/sweep_submit.py [--trials 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "train.py").write_text("import time; time.sleep(60)\n")
        env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(work / "state")}
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "fulmen.launcher", "launch", "--cluster", "slurm", "--sweep",
             f"i=range(0, {args.trials - 1}, {args.trials})", "--parallel", "1", "train.py"],
            check=False, cwd=work, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        launch_s = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"launch failed ({proc.returncode}):\n{proc.stderr}")
        (sweep_dir,) = (work / "fulmen_runs").iterdir()
        ids = {json.loads(p.read_text())["job_id"].split("_")[0] for p in sweep_dir.glob("trial_*/trial.json")}
        array_id = min(ids)
        try:
            while True:
                listed = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%i"],
                                        capture_output=True, text=True, check=True).stdout.split()
                if len(listed) >= args.trials or time.perf_counter() - start > 60:
                    break
                time.sleep(0.05)
            all_listed_s = time.perf_counter() - start
        finally:
            subprocess.run(["scancel", array_id], check=False)
    print(json.dumps({"trials": args.trials, "array_jobs": len(ids), "elements_listed": len(listed),
                      "launch_s": round(launch_s, 3), "all_listed_s": round(all_listed_s, 3)}))


if __name__ == "__main__":
    main()
