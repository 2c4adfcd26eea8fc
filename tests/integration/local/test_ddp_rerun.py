"""fit -> validate -> test -> predict -> fit again in one process per rank, under ``launch`` and
``python script.py``: every run re-uses the process group of the first (destroying it after each
run and re-initialising on the same MASTER_PORT hung both ranks until the timeout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import child_env, launch_cmd, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "ddp_rerun.py"
ROUNDS = 3


def check_rounds(out: Path) -> None:
    r0, r1 = (json.loads((out / f"rerun_rank{rank}.json").read_text()) for rank in (0, 1))
    assert len(r0["rounds"]) == len(r1["rounds"]) == ROUNDS
    for a, b in zip(r0["rounds"], r1["rounds"]):
        assert a["rank_mean"] == b["rank_mean"] == 0.5  # test ran on both ranks, synced over the group
        assert a["val_loss"] == pytest.approx(b["val_loss"]) and a["test_loss"] == pytest.approx(b["test_loss"])
        assert a["predicted"] == b["predicted"] == 16  # 32 samples, half per rank
        assert a["global_step"] == b["global_step"] == 4  # 32 samples / 2 ranks / batch 4
        assert a["weight"] == pytest.approx(b["weight"])  # DDP kept the replicas identical
    assert all(r["val_loss"] == r["val_loss"] for r in r0["rounds"])


def test_fit_validate_test_predict_fit_under_launch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp_path / "run"), str(SCRIPT), "--out", str(out),
                     "--rounds", str(ROUNDS))
    try:
        done = run(cmd, child_env(tmp_path), timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fit -> test -> fit under launch hung for 90 s (rounds={ROUNDS})")
    assert done.returncode == 0, done.stderr[-3000:]
    check_rounds(out)


def test_fit_validate_test_predict_fit_under_python_script(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--rounds", str(ROUNDS)]
    try:
        done = subprocess.run(cmd, env=child_env(tmp_path), capture_output=True, text=True, timeout=90, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fit -> test -> fit under `python script.py` hung for 90 s (rounds={ROUNDS})")
    assert done.returncode == 0, done.stderr[-3000:]
    check_rounds(out)
