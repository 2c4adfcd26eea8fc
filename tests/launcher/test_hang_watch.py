"""Which rank the launcher's progress watchdog calls stuck (fulmen/launcher/hang_watch.py).

With real processes: tests/integration/local/test_hang_watchdog.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fulmen.jobs import hang
from fulmen.launcher import hang_watch

IN_TORCH = """Current thread 0x1 (most recent call first):
  File "{torch}/autograd/__init__.py", line 395 in backward
  File "/home/me/train.py", line 50 in main
"""
IN_USER_CODE = """Current thread 0x2 (most recent call first):
  File "/home/me/train.py", line 29 in training_step
  File "/home/me/train.py", line 50 in main
"""
NO_PID = 2**22 + 12345  # above pid_max's default: the signal goes nowhere


@pytest.fixture
def watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> hang_watch.HangWatch:
    import torch

    monkeypatch.setattr(hang_watch, "_DUMP_WAIT_S", 0.2)
    monkeypatch.setattr(hang_watch.shutil, "which", lambda name: None)  # the faulthandler path
    torch_dir = str(Path(torch.__file__).parent)
    for rank, text in ((0, IN_TORCH), (1, IN_USER_CODE)):
        hang.stack_path(tmp_path, rank).parent.mkdir(parents=True, exist_ok=True)
        hang.stack_path(tmp_path, rank).write_text(text.format(torch=torch_dir))
    return hang_watch.HangWatch(tmp_path, timeout=0.05)


def _beat(run_dir: Path, counters: dict[int, int]) -> None:
    for rank, counter in counters.items():
        beat = hang.HeartbeatFile(hang.heartbeat_path(run_dir, rank))
        beat.write(counter)
        beat.close()


def _check_after_timeout(watch: hang_watch.HangWatch) -> hang_watch.Hang | None:
    pids = {0: NO_PID, 1: NO_PID + 1}
    assert watch.check(pids) is None  # first sight of the counters
    time.sleep(0.1)
    watch._next_check = 0.0
    return watch.check(pids)


def test_equal_counters_blame_the_rank_in_user_code_not_the_one_waiting_in_torch(
    tmp_path: Path, watch: hang_watch.HangWatch
) -> None:
    _beat(tmp_path, {0: 3, 1: 3})
    found = _check_after_timeout(watch)
    assert found is not None and found.rank == 1 and found.pid == NO_PID + 1
    assert found.where == hang.Frame("/home/me/train.py", 29, "training_step")
    assert "rank 1 (pid" in found.describe() and "stuck in training_step at /home/me/train.py:29" in found.describe()


def test_the_rank_behind_is_the_stuck_one(tmp_path: Path, watch: hang_watch.HangWatch) -> None:
    _beat(tmp_path, {0: 2, 1: 3})
    found = _check_after_timeout(watch)
    assert found is not None and found.rank == 0 and found.where == hang.Frame("/home/me/train.py", 50, "main")


def test_no_heartbeat_no_hang(tmp_path: Path, watch: hang_watch.HangWatch) -> None:
    assert _check_after_timeout(watch) is None
