"""Helpers for the local-launcher acceptance tests: start runs, wait for progress, find leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).resolve().parent / "scripts" / "ddp_fit.py"
RUN_TIMEOUT_S = 60  # the whole run, per the acceptance criteria: nothing may hang


def child_env(tmp: Path) -> dict[str, str]:
    """The checkout importable, job records kept out of the home folder, no inherited ranks."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "FULMEN_RUN_DIR")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["XDG_STATE_HOME"] = str(tmp / "state")
    return env


def launch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fulmen.launcher", "launch", *args]


def run(cmd: list[str], env: dict[str, str], timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)


def wait_for_step(out: Path, rank: int, step: int, proc: subprocess.Popen[str], timeout: float = 45) -> dict[str, Any]:
    """The rank's progress record once it reached ``step`` (fails if the run ends first)."""
    path = out / f"progress_rank{rank}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            progress = json.loads(path.read_text())
            if progress["global_step"] >= step:
                return progress
        if proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before rank {rank} reached step {step}:\n"
                                 + (proc.stderr.read() if proc.stderr else ""))
        time.sleep(0.05)
    raise AssertionError(f"rank {rank} did not reach step {step} within {timeout} s")


def results(out: Path, world_size: int = 2) -> list[dict[str, Any]]:
    return [json.loads((out / f"result_rank{r}.json").read_text()) for r in range(world_size)]


def processes_of_run(run_dir: Path) -> list[psutil.Process]:
    """Live processes whose environment names this run directory (ranks, workers, launcher)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("FULMEN_RUN_DIR") == str(run_dir) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
