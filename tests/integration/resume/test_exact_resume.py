"""Exact resume: interrupted-and-resumed runs match an uninterrupted one bit for bit on CPU.

Shuffled data, dropout, Adam and a per-step LR schedule (issue 3's main acceptance):
A trains 3 epochs; B stops after the first epoch and resumes from ``last.ckpt`` in a new
process; C saves every 17 optimizer steps, is SIGKILLed right after the save at step 17
(in the middle of the second epoch) and resumes from that file in a new process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("resume_script.py")
STEPS_PER_EPOCH = 12


def _run(out: Path, env: dict[str, str], *args: str, expect: int = 0) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _steps(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = torch.load(a / "final.pt", weights_only=True), torch.load(b / "final.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3]) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FULMEN_RUN_DIR", None)
    out = tmp_path_factory.mktemp("A")
    _run(out, env, "--max-epochs", "3")
    steps = _steps(out)
    assert [s["step"] for s in steps] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    assert len({s["lr"] for s in steps}) > 3  # the schedule really moves the learning rate
    return out, env


def test_resume_after_first_epoch_matches_uninterrupted(reference: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    a, env = reference
    _run(tmp_path, env, "--max-epochs", "1")
    last = tmp_path / "ckpts" / "last.ckpt"
    assert last.exists()
    _run(tmp_path, env, "--max-epochs", "3", "--ckpt", str(last))
    assert _steps(tmp_path) == _steps(a)
    _assert_same_weights(a, tmp_path)


def test_sigkill_after_mid_epoch_checkpoint_then_resume_matches(
    reference: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    a, env = reference
    _run(tmp_path, env, "--max-epochs", "3", "--every-n-steps", "17", "--kill-at-step", "17", expect=-signal.SIGKILL)
    saved = tmp_path / "ckpts" / "epoch=1-step=17.ckpt"  # 5 of the second epoch's 12 batches done
    assert saved.exists(), sorted(p.name for p in (tmp_path / "ckpts").iterdir())
    assert not (tmp_path / "final.pt").exists()
    assert [s["step"] for s in _steps(tmp_path)][-1] == 17  # killed right after the save, before step 18
    _run(tmp_path, env, "--max-epochs", "3", "--every-n-steps", "17", "--ckpt", str(saved))
    assert _steps(tmp_path) == _steps(a)
    _assert_same_weights(a, tmp_path)
