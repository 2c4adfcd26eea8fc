"""The resume checkpoint of a run: saved on a stop signal, found at start, ahead of ckpt_path.

A process in a run directory (``FULMEN_RUN_DIR``) gets SIGTERM in the middle of the second
epoch; it saves ``<run>/checkpoints/resume/`` at the next step boundary and exits with 75.
Started again with the same command, which names an *older* explicit ``ckpt_path``, it
continues from the run's resume checkpoint instead, and ends bit-identical to an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fulmen.runtime import checkpoint as ck

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("resume_script.py")
PREEMPTED_EXIT_CODE = 75


def _run(out: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args], env=env, capture_output=True, text=True, timeout=240
    )


def _steps(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]


def test_signal_saves_resume_checkpoint_which_beats_explicit_ckpt_path(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    env = dict(subprocess_env)
    env.pop("FULMEN_RUN_DIR", None)
    reference = tmp_path / "A"
    assert _run(reference, env, "--max-epochs", "3").returncode == 0

    # an explicit checkpoint to fine-tune from: the end of the first epoch of another run
    first = tmp_path / "first"
    assert _run(first, env, "--max-epochs", "1").returncode == 0
    explicit = first / "ckpts" / "last.ckpt"

    run_dir = tmp_path / "run"
    env["FULMEN_RUN_DIR"] = str(run_dir)
    out = tmp_path / "B"
    # copy the first epoch's records: the explicit checkpoint stands for them
    out.mkdir()
    (out / "steps.jsonl").write_text((first / "steps.jsonl").read_text())
    proc = _run(out, env, "--max-epochs", "3", "--ckpt", str(explicit), "--signal-at-step", "20")
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    resume = ck.find_resume_checkpoint(run_dir)
    assert resume is not None and resume.parent == run_dir / "checkpoints" / "resume"
    saved_step = ck.load_checkpoint(resume)["global_step"]
    assert saved_step == _steps(out)[-1]["step"] > 20  # the step that was running when the signal came
    assert not (out / "final.pt").exists()

    proc = _run(out, env, "--max-epochs", "3", "--ckpt", str(explicit))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _steps(out) == _steps(reference)
    final, expected = torch.load(out / "final.pt"), torch.load(reference / "final.pt")
    assert all(torch.equal(final[k], expected[k]) for k in expected)
