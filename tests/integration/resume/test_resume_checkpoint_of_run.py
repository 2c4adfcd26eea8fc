"""The resume checkpoint of a run: saved on a stop signal, found at start, ahead of ckpt_path.

A process in a run directory (``FULMEN_RUN_DIR``) that fine-tunes from an explicit
``ckpt_path`` (the end of another run's first epoch) gets SIGTERM in the middle of its second
epoch; it saves ``<run>/checkpoints/resume/`` at the next step boundary and exits with 75.
Started again with the same command, it continues from the run's resume checkpoint, not
from ``ckpt_path``, and ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fulmen.runtime import checkpoint as ck
from fulmen.runtime import resume_checkpoint as rc

from .conftest import run_phase, steps

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREEMPTED_EXIT_CODE = 75


def test_signal_saves_resume_checkpoint_which_beats_explicit_ckpt_path(
    reference_run: Path, copy_of_first_epoch: Path, tmp_path: Path, resume_env: dict[str, str]
) -> None:
    out = copy_of_first_epoch  # its steps.jsonl holds the first epoch, which the explicit file stands for
    explicit = out / "ckpts" / "last.ckpt"
    run_dir = tmp_path / "rundir"
    env = {**resume_env, "FULMEN_RUN_DIR": str(run_dir)}

    proc = run_phase(out, env, "--max-epochs", "3", "--ckpt", str(explicit), "--signal-at-step", "20")
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    resume = rc.find_resume_checkpoint(run_dir)
    assert resume is not None and resume.parent == run_dir / "checkpoints" / "resume"
    saved_step = ck.load_checkpoint(resume)["global_step"]
    assert saved_step == steps(out)[-1]["step"] > 20  # the step that was running when the signal came
    assert not (out / "final.pt").exists()

    proc = run_phase(out, env, "--max-epochs", "3", "--ckpt", str(explicit))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert steps(out) == steps(reference_run)
    final = torch.load(out / "final.pt", weights_only=True)
    expected = torch.load(reference_run / "final.pt", weights_only=True)
    assert all(torch.equal(final[k], expected[k]) for k in expected)
