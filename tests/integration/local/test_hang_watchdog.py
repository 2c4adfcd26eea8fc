"""The progress watchdog with real processes (issue 16.6): a rank that sleeps forever inside
training_step is found within seconds, named with its file and line, every rank's stack is in
the run dir, and the job ends with HANG_EXIT_CODE (or restarts under --max-restarts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fulmen.jobs.exit_codes import HANG_EXIT_CODE
from fulmen.jobs.hang import HANG_TIMEOUT_VARIABLE
from tests.integration.local.conftest import REPO_ROOT, child_env, launch_cmd, processes_of_run, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "hang_fit.py"
HANG_LINE = next(i for i, line in enumerate(SCRIPT.read_text().splitlines(), 1) if "HANG HERE" in line)


def test_launcher_names_the_hung_rank_dumps_every_stack_and_exits_124(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run(launch_cmd("--nproc-per-node", "2", "--hang-timeout", "3", "--run-dir", str(run_dir), str(SCRIPT),
                          "--hang-rank", "1"), child_env(tmp_path), timeout=150)  # fmt: skip
    assert done.returncode == HANG_EXIT_CODE, done.stderr[-3000:]
    assert "fulmen: rank 1 (pid " in done.stderr and "made no progress for" in done.stderr
    assert f"stuck in training_step at {SCRIPT}:{HANG_LINE}" in done.stderr, done.stderr[-3000:]
    for rank in (0, 1):
        stack = (run_dir / "stacks" / f"rank_{rank}.txt").read_text()
        assert "most recent call first" in stack, (rank, stack)
    assert f'File "{SCRIPT}", line {HANG_LINE} in training_step' in (run_dir / "stacks" / "rank_1.txt").read_text()
    assert processes_of_run(run_dir) == []


def test_a_hang_restarts_under_max_restarts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run(launch_cmd("--nproc-per-node", "2", "--hang-timeout", "3", "--max-restarts", "1", "--run-dir",
                          str(run_dir), str(SCRIPT), "--hang-rank", "0"), child_env(tmp_path), timeout=150)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exited with no progress (hang watchdog, exit code 124); restarting all ranks" in done.stderr
    assert "rank 0 finished at step 4" in done.stdout  # 32 samples, 2 ranks, batch 4


def test_trainer_side_watchdog_without_the_launcher(tmp_path: Path) -> None:
    """torchrun/srun users: FULMEN_HANG_TIMEOUT turns on the rank's own watchdog."""
    env = {**child_env(tmp_path), HANG_TIMEOUT_VARIABLE: "2"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--hang-rank", "0"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT, check=False)  # fmt: skip
    assert done.returncode == HANG_EXIT_CODE, done.stderr[-3000:]
    assert f"rank 0 made no progress for 2 s (batch counter 2); stuck in training_step at {SCRIPT}:{HANG_LINE}" in (
        done.stderr
    )
    assert f'File "{SCRIPT}", line {HANG_LINE} in training_step' in done.stderr  # faulthandler's dump
    assert not os.path.exists(tmp_path / "stacks")
