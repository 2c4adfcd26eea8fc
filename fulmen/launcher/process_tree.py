"""The process trees of a run's ranks: resource sampling, and cleanup that leaves nothing behind.

Each rank is started in its own session (the elastic agent does ``start_new_session``), so
the rank and the processes it forks (DataLoader workers, compile workers) share one process
group whose id is the rank's pid. Cleanup kills every descendant ever seen by sampling and
then each rank's process group, which also catches children that were born after the last
sample or were orphaned when their rank died.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass
class RankUsage:
    """What one rank (with its children) used, from periodic samples."""

    global_rank: int
    pid: int
    peak_rss_bytes: int = 0
    cpu_seconds: float = 0.0
    max_children: int = 0

    def describe(self, exit_code: int | None) -> str:
        """One line: ``rank 1 pid 4242 exit 0: cpu 3.1 s, peak rss 412 MB, 2 child processes``."""
        status = "running" if exit_code is None else f"exit {exit_code}"
        return (
            f"rank {self.global_rank} pid {self.pid} {status}: cpu {self.cpu_seconds:.1f} s, "
            f"peak rss {self.peak_rss_bytes / 2**20:.0f} MB, {self.max_children} child processes"
        )


class ProcessTreeMonitor:
    """Samples the ranks of the current attempt and remembers every descendant it saw."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.usage: dict[int, RankUsage] = {}
        self._procs: dict[int, psutil.Process] = {}  # global rank -> rank process
        self._seen: dict[int, psutil.Process] = {}  # pid -> every process of the run ever seen
        self._group_ids: set[int] = set()
        self._last = 0.0

    def track(self, rank_pids: dict[int, int]) -> None:
        """Start following a new attempt's ranks (global rank -> pid)."""
        self._procs = {}
        for rank, pid in rank_pids.items():
            self.usage[rank] = RankUsage(rank, pid)
            self._group_ids.add(pid)
            try:
                self._procs[rank] = self._seen[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
        self._last = 0.0

    def sample(self, force: bool = False) -> None:
        """Update peak memory / cpu time; rate-limited to ``interval`` unless ``force``."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        for rank, proc in self._procs.items():
            usage = self.usage[rank]
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                children = proc.children(recursive=True)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for child in children:
                self._seen.setdefault(child.pid, child)
                try:
                    rss += child.memory_info().rss
                    child_times = child.cpu_times()
                    cpu += child_times.user + child_times.system
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass
            usage.peak_rss_bytes = max(usage.peak_rss_bytes, rss)
            usage.cpu_seconds = max(usage.cpu_seconds, cpu)
            usage.max_children = max(usage.max_children, len(children))

    def live_processes(self) -> list[psutil.Process]:
        """Processes of the run (any attempt) that still exist, zombies excluded."""
        alive = []
        for proc in self._seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return alive

    def kill_all(self) -> None:
        """SIGKILL every process of the run that is still there, then reap what we can."""
        for proc in self.live_processes():
            try:
                proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        for group in self._group_ids:
            _signal_group(group, signal.SIGKILL)
        # Ranks themselves are the agent's children: reaping them here would hide their exit
        # codes from it. Grandchildren are reparented and reaped elsewhere (or linger as
        # zombies where PID 1 does not reap): gone or zombie is enough.
        deadline = time.monotonic() + 2.0
        while self.live_processes() and time.monotonic() < deadline:
            time.sleep(0.02)


def stop_ranks(procs: list[subprocess.Popen[bytes]], grace: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` to each running rank; SIGKILL the rank's process group if alive after ``grace``.

    Ranks catch SIGTERM to checkpoint and exit (PreemptionHandler), which a rank stuck in a
    collective with a dead peer can never do; the grace bounds how long we wait for that.
    ``sig`` goes to the rank process only, not its group: its DataLoader workers die of a
    SIGTERM, and the rank would then fail ("DataLoader worker ... is killed by signal")
    instead of saving; it stops them itself on its way out. Waiting goes through ``Popen``
    (not psutil) so the exit codes stay readable by the agent.
    """
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
    for proc in running:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass  # uninterruptible sleep; kill_all() tries again at the end


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ExitClock:
    """When did each rank exit? Exact order, so the report names the rank that failed *first*.

    The monitor polls every 0.1 s, and a survivor whose peer vanished fails within
    milliseconds, so both usually show up in the same poll. One thread per rank waits with
    ``waitid(WNOWAIT)``, which notes the moment of exit without reaping the process (the
    agent's ``Popen`` still reads the exit code).
    """

    def __init__(self) -> None:
        self.exited_at: dict[int, float] = {}

    def watch(self, key: int, pid: int) -> None:
        threading.Thread(target=self._wait, args=(key, pid), daemon=True, name=f"exit-clock-{pid}").start()

    def _wait(self, key: int, pid: int) -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # already reaped by the agent: "now" is the best we know
        self.exited_at.setdefault(key, time.monotonic())
