"""Reading heartbeats and stacks for the progress watchdog (fulmen/jobs/hang.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.jobs import hang

FAULTHANDLER_DUMP = """Thread 0x00007f0000000001 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 331 in wait
  File "{fulmen}/runtime/progress_watchdog.py", line 73 in _watch

Current thread 0x00007f0000000002 (most recent call first):
  File "{torch}/autograd/__init__.py", line 395 in backward
  File "/home/me/train.py", line 29 in training_step
  File "{fulmen}/runtime/fit_loop.py", line 260 in _run_batch
  File "/home/me/train.py", line 50 in main
  File "{fulmen}/launcher/rank_entry.py", line 60 in main
"""

PY_SPY_DUMP = """Process 6530: python -u -m fulmen.launcher.rank_entry train.py
Python v3.11.7 (/usr/bin/python3.11)

Thread 6531 (idle): "fulmen-progress-watchdog"
    wait (threading.py:331)
Thread 6530 (idle): "MainThread"
    training_step (/home/me/train.py:29)
    _run_batch ({fulmen}/runtime/fit_loop.py:260)
"""


@pytest.fixture
def places() -> dict[str, str]:
    import torch

    return {"fulmen": str(Path(hang.__file__).resolve().parent.parent), "torch": str(Path(torch.__file__).parent)}


def test_faulthandler_dump_main_thread_and_its_top_user_frame(places: dict[str, str]) -> None:
    frames = hang.main_thread_frames(FAULTHANDLER_DUMP.format(**places))
    assert [f.function for f in frames] == ["backward", "training_step", "_run_batch", "main", "main"]
    top = hang.top_user_frame(frames)
    assert top is not None and top.describe() == "training_step at /home/me/train.py:29"


def test_py_spy_dump_main_thread_and_its_top_user_frame(places: dict[str, str]) -> None:
    frames = hang.main_thread_frames(PY_SPY_DUMP.format(**places))
    assert [f.function for f in frames] == ["training_step", "_run_batch"]
    assert hang.top_user_frame(frames) == hang.Frame("/home/me/train.py", 29, "training_step")


def test_no_frames_in_an_empty_or_partial_dump() -> None:
    assert hang.main_thread_frames("") == []
    assert hang.top_user_frame([]) is None


def test_heartbeat_file_round_trip_and_in_place_rewrites(tmp_path: Path) -> None:
    path = hang.heartbeat_path(tmp_path, 3)
    assert hang.read_heartbeat(path) is None
    beat = hang.HeartbeatFile(path)
    beat.write(123456)
    beat.write(7)  # shorter number: fixed width, nothing of the old one left
    assert hang.read_heartbeat(path) == 7
    beat.close()


def test_progress_clock_counts_from_the_last_change_and_ignores_missing_heartbeats() -> None:
    clock = hang.ProgressClock()
    clock.observe(0, 5, now=100.0)
    clock.observe(1, None, now=100.0)  # not started yet: never counted as hung
    clock.observe(0, 5, now=104.0)
    assert clock.stalled(104.0, timeout=3.0) == {0: (5, 4.0)}
    clock.observe(0, 6, now=105.0)
    assert clock.stalled(106.0, timeout=3.0) == {}


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("5", 5.0), ("0", None), ("ten", None)])
def test_hang_timeout_from_the_environment(raw: str, expected: float | None) -> None:
    assert hang.hang_timeout_from({hang.HANG_TIMEOUT_VARIABLE: raw}) == expected


def test_the_stack_dump_signal_writes_every_thread_into_the_rank_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import os, signal, sys, time\n"
        "from fulmen.jobs import hang\n"
        "path = hang.register_stack_dump(sys.argv[1], 3)\n"
        "os.kill(os.getpid(), hang.STACK_DUMP_SIGNAL)\n"
        "time.sleep(0.2)\n"
        "print(path)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "stacks" / "rank_3.txt")
    assert 'File "<string>", line 4 in <module>' in (tmp_path / "stacks" / "rank_3.txt").read_text()  # os.kill's line
    assert hang.register_stack_dump(None, 0) is None and hang.register_stack_dump(str(tmp_path), None) is None


def test_tidy_rank_files_keeps_only_stacks_that_were_dumped(tmp_path: Path) -> None:
    run_dir = str(tmp_path)
    for rank, dumped in ((0, ""), (1, "Thread 0x1 (most recent call first):\n")):
        hang.stack_path(run_dir, rank).parent.mkdir(exist_ok=True)
        hang.stack_path(run_dir, rank).write_text(dumped)
        hang.HeartbeatFile(hang.heartbeat_path(run_dir, rank)).write(7)
    hang.tidy_rank_files(run_dir, 0)
    assert not hang.stack_path(run_dir, 0).exists() and not hang.heartbeat_path(run_dir, 0).exists()
    assert (tmp_path / "heartbeat").is_dir()  # rank 1's is still there
    hang.tidy_rank_files(run_dir, 1)
    assert hang.stack_path(run_dir, 1).read_text().startswith("Thread")  # a dump is evidence: kept
    assert not (tmp_path / "heartbeat").exists()
    hang.tidy_rank_files(None, 0)  # no run dir: nothing to do
