"""Runs of ``resume_script.py`` shared by the resume tests (each costs a process start)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("resume_script.py")
STEPS_PER_EPOCH = 12


def run_phase(out: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """One process of the experiment; its records go to ``out/steps.jsonl``."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args], env=env, capture_output=True, text=True, timeout=240
    )


def steps(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def resume_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3]) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("FULMEN_RUN_DIR", None)
    return env


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, resume_env: dict[str, str]) -> Path:
    """Run A: three epochs without interruption."""
    out = tmp_path_factory.mktemp("A")
    proc = run_phase(out, resume_env, "--max-epochs", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = steps(out)
    assert [s["step"] for s in records] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert len({s["lr"] for s in records}) > 3  # the schedule really moves the learning rate
    assert (out / "reads.txt").read_text().split() == [str(3 * 96)]  # every sample once per epoch
    return out


@pytest.fixture(scope="session")
def first_epoch_run(tmp_path_factory: pytest.TempPathFactory, resume_env: dict[str, str]) -> Path:
    """The first epoch only (``ckpts/last.ckpt`` at step 12); copy it before writing into it."""
    out = tmp_path_factory.mktemp("first_epoch")
    proc = run_phase(out, resume_env, "--max-epochs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "ckpts" / "last.ckpt").exists()
    return out


@pytest.fixture
def copy_of_first_epoch(first_epoch_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(first_epoch_run, out)
    (out / "final.pt").unlink()  # the weights at the end of the first run, not of this one
    return out
