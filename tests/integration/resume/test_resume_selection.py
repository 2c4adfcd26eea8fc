"""The newest progress of a run wins over a stale resume checkpoint (issue #16 item 1).

Real processes in one run directory, ``ModelCheckpoint(every_n_train_steps=1, save_last=True)``
and ``fit(ckpt_path="last")``: SIGTERM at step 3 (exit 75, resume checkpoint at step 4); the
next start resumes, saves ``last.ckpt`` every step and crashes after step 30; the third start
must continue from ``last.ckpt`` at step 30, not from the step-4 resume file, and end
bit-identical to an uninterrupted run. The same under ``launch --max-restarts``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fulmen.runtime import resume_checkpoint as rc

from .conftest import SCRIPT, run_phase, steps

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREEMPTED_EXIT_CODE = 75
ARGS = ("--max-epochs", "3", "--ckpt", "last", "--every-n-steps", "1")


def _same_as_reference(out: Path, reference_run: Path) -> None:
    assert steps(out) == steps(reference_run)  # every step once: nothing redone, nothing skipped
    final = torch.load(out / "final.pt", weights_only=True)
    expected = torch.load(reference_run / "final.pt", weights_only=True)
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_last_checkpoint_saved_after_a_resume_beats_the_stale_resume_checkpoint(
    reference_run: Path, tmp_path: Path, resume_env: dict[str, str]
) -> None:
    out, run_dir = tmp_path / "out", tmp_path / "run"
    env = {**resume_env, "FULMEN_RUN_DIR": str(run_dir)}

    first = run_phase(out, env, *ARGS, "--signal-at-step", "3")
    assert first.returncode == PREEMPTED_EXIT_CODE, first.stderr[-3000:]
    stale = rc.find_resume_checkpoint(run_dir)
    assert stale is not None and stale.name == rc.resume_checkpoint_name(4)

    second = run_phase(out, env, *ARGS, "--crash-at-step", "30")
    assert second.returncode == 1 and "crash at step 30" in second.stderr, second.stderr[-3000:]
    assert f"Resumed from {stale} at epoch 0, step 4 (restart 0, 0 steps redone)" in second.stderr
    assert rc.find_resume_checkpoint(run_dir) == stale  # a failed run keeps its resume checkpoint

    third = run_phase(out, env, *ARGS)
    assert third.returncode == 0, third.stderr[-3000:]
    last = out / "ckpts" / "last.ckpt"
    assert f"Chose {last}: " in third.stderr and str(stale) in third.stderr  # which file, and why
    assert f"Resumed from {last} at epoch 2, step 30 (restart 0, 0 steps redone)" in third.stderr
    _same_as_reference(out, reference_run)
    assert not (run_dir / "checkpoints").exists()  # completed: the resume checkpoint is gone


def test_same_under_launch_max_restarts(reference_run: Path, tmp_path: Path, resume_env: dict[str, str]) -> None:
    out, run_dir = tmp_path / "out", tmp_path / "run"
    cmd = [sys.executable, "-m", "fulmen.launcher", "launch", "--max-restarts", "2", "--run-dir", str(run_dir),
           str(SCRIPT), str(out), *ARGS, "--signal-at-step", "3", "--crash-at-step", "30"]  # fmt: skip
    done = subprocess.run(cmd, env=resume_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run_dir / "logs" / "rank_0.log").read_text()
    assert f"Resumed from {out / 'ckpts' / 'last.ckpt'} at epoch 2, step 30 (restart 2, 0 steps redone)" in log
    _same_as_reference(out, reference_run)
    assert not (run_dir / "checkpoints").exists()
