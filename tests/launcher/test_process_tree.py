"""Process handling of the local backend, on plain sleeper processes (no DDP)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from fulmen.launcher.process_tree import ExitClock, ProcessTreeMonitor, stop_ranks


def _sleeper(extra: str = "") -> subprocess.Popen[bytes]:
    code = f"import time, signal{extra}\ntime.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_stop_ranks_kills_a_rank_that_ignores_sigterm_after_the_grace() -> None:
    stubborn = _sleeper("; signal.signal(signal.SIGTERM, lambda *a: None)")
    polite = _sleeper()
    time.sleep(0.5)  # let the handler be installed
    started = time.monotonic()
    stop_ranks([stubborn, polite], grace=0.5)
    assert time.monotonic() - started < 5
    assert polite.returncode == -signal.SIGTERM and stubborn.returncode == -signal.SIGKILL


def test_exit_clock_orders_exits_without_reaping() -> None:
    first = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    clock = ExitClock()
    clock.watch(0, first.pid)
    clock.watch(1, second.pid)
    assert second.wait(10) == 0 and first.wait(10) == 3  # exit codes still readable
    deadline = time.monotonic() + 5
    while len(clock.exited_at) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert clock.exited_at[0] < clock.exited_at[1]


def test_monitor_kills_orphaned_children(tmp_path: Path) -> None:
    # A "rank" that forks a worker (like a DataLoader) and is then killed: the worker survives
    # its parent, and kill_all() must still find it.
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    rank = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    monitor = ProcessTreeMonitor(interval=0)
    monitor.track({0: rank.pid})
    deadline = time.monotonic() + 10
    while not psutil.Process(rank.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    monitor.sample(force=True)
    child = psutil.Process(rank.pid).children()[0]
    rank.kill()
    rank.wait()
    assert child.is_running()
    monitor.kill_all()
    assert not monitor.live_processes()
    assert monitor.usage[0].peak_rss_bytes > 0 and monitor.usage[0].max_children == 1
    assert "rank 0 pid" in monitor.usage[0].describe(-9)
