"""Signals to the local launcher, with real processes (issue 16.7).

SIGTERM twice within 50 ms, while two DDP ranks with DataLoader workers train: the second
signal must not cut the grace the ranks get to save, and the forwarded signal must reach the
rank processes only (a SIGTERM to their process groups killed the DataLoader workers, and the
ranks failed instead of saving: exit 143 without a resume checkpoint, every trial).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from tests.integration.local.conftest import SCRIPT, child_env, launch_cmd, processes_of_run, start, wait_for_step

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

TRIALS = 3  # each ~8 s here; before the fix every trial failed


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigterm_twice_within_50_ms_ends_in_one_resume_checkpoint_and_exit_75(tmp_path: Path, trial: int) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = start(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out),
                            "--step-sleep", "0.2", "--workers", "2"), child_env(tmp_path))
    try:
        wait_for_step(out, 0, 1 + trial, proc)  # a different step each trial
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    assert "is killed by signal" not in stderr
    assert "SIGTERM received: ranks saved the resume checkpoint" in stderr
    assert len(list((run_dir / "checkpoints" / "resume").glob("*.ckpt"))) == 1
    assert processes_of_run(run_dir) == []
