"""A SIGTERM while a rank hangs, with real processes (issue 16.6, last sentence).

Two gloo ranks; one sleeps forever inside training_step after step 2, so the other waits in the
step's gradient all-reduce. Before the rescue the agreed stop never came (it needs every rank
at a step boundary): the launcher killed both after its grace and exited 143 without a resume
checkpoint. Now the rank that waits in backward saves the resume checkpoint of step 2 (the last
completed step) without a collective, every rank exits 75, and a rerun continues from step 2
and ends with the weights of a run that was never interrupted.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from fulmen.jobs import rundir
from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from tests.integration.local.conftest import child_env, launch_cmd, processes_of_run, run, start

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "hang_fit.py"
RESCUE = "resume-step=000000000002.ckpt"


def _wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (exit {proc.returncode}) before the rank hung:\n{proc.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no rank hung within {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("hang_rank", [1, 0])
def test_sigterm_during_a_hang_saves_the_last_completed_step_and_a_rerun_resumes_from_it(
    tmp_path: Path, hang_rank: int
) -> None:
    run_dir, marker, env = tmp_path / "run", tmp_path / "hanging", child_env(tmp_path)
    args = ("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT))
    proc = start(launch_cmd(*args, "--hang-rank", str(hang_rank), "--hang-at-step", "2", "--hanging-marker",
                            str(marker)), env)  # fmt: skip
    try:
        _wait_for(marker, proc)
        time.sleep(0.5)  # the healthy rank's step reaches its gradient all-reduce
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=150)
    finally:
        proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    saved = run_dir / "checkpoints" / "resume" / RESCUE
    assert sorted(p.name for p in saved.parent.glob("*.ckpt")) == [RESCUE]
    assert "SIGTERM received: ranks saved the resume checkpoint and stopped (exit 75)." in stderr
    healthy = 1 - hang_rank
    said = stderr if healthy == 0 else rundir.rank_log_path(run_dir, healthy).read_text()
    assert f"fulmen: rank {healthy}: step 3 did not end within" in said, said[-3000:]
    assert f"saved the resume checkpoint of step 2 (the last completed step) to {saved}" in said, said[-3000:]
    hung_said = stderr if hang_rank == 0 else rundir.rank_log_path(run_dir, hang_rank).read_text()
    assert f"fulmen: rank {hang_rank}: rank {healthy} saved the resume checkpoint of step 2" in hung_said
    assert processes_of_run(run_dir) == []

    resumed, straight = tmp_path / "resumed.pt", tmp_path / "straight.pt"
    done = run(launch_cmd(*args, "--hang-rank", "-1", "--weights-out", str(resumed)), env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resumed from {saved} at epoch 0, step 2" in done.stdout + done.stderr
    assert "rank 0 finished at step 4" in done.stdout  # 32 samples, 2 ranks, batch 4
    again = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp_path / "straight"), str(SCRIPT),
                           "--weights-out", str(straight)), env, timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    expected, got = torch.load(straight), torch.load(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected), (expected, got)
