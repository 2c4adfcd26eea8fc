"""The rich callbacks on a console that is not a terminal: rank 0's output under ``launch`` is the
finished table and bar, once, without control characters; other ranks draw nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import child_env, launch_cmd, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "rich_fit.py"


def _check_rank0_console(stdout: str) -> None:
    assert "\x1b" not in stdout and "\r" not in stdout, repr(stdout)
    lines = stdout.splitlines()
    assert sum(line.startswith("┃   ┃ Name") for line in lines) == 1, stdout
    assert sum("Trainable params: 161" in line for line in lines) == 1, stdout
    bars = [line for line in lines if line.startswith("Epoch ")]
    assert len(bars) == 1 and bars[0].startswith("Epoch 1/1 ") and " 4/4 " in bars[0]  # 8 batches shared by 2 ranks, stdout
    assert "rank 0 done" in lines and "rank 1 done" not in stdout


@pytest.mark.parametrize("how", ["launch-2", "python-devices-2"])
def test_rank0_prints_the_finished_table_and_bar_once(how: str, tmp_path: Path) -> None:
    if how == "launch-2":
        cmd = launch_cmd("--nproc-per-node", "2", str(SCRIPT), "--ddp")
    else:
        cmd = [sys.executable, str(SCRIPT), "--ddp"]
    done = run(cmd, child_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    _check_rank0_console(done.stdout)
