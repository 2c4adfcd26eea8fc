"""The launcher side of the progress watchdog (``fulmen.jobs.hang`` has the whole story).

``HangWatch.check`` is called from the agent's monitor loop; about once a second (or a tenth
of the timeout) it reads each rank's heartbeat file. When a rank's counter has not moved for
``--hang-timeout`` seconds it asks every rank for its Python stack (py-spy where installed,
else the rank entry's faulthandler through ``STACK_DUMP_SIGNAL``), picks the stuck rank and
its top user frame, and returns a ``Hang``; the agent prints it and stops the ranks.

Which rank is stuck: a hung rank stalls its peers too (they wait for it in the next
collective), so every counter stops at about the same moment. The stuck one is the rank with
the lowest counter; among equals, the one whose main thread is in the user's own code (its
peers wait inside torch); among those, the lowest rank.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fulmen.jobs.hang import (
    STACK_DUMP_SIGNAL,
    Frame,
    ProgressClock,
    heartbeat_path,
    is_user_file,
    main_thread_frames,
    read_heartbeat,
    stack_path,
    top_user_frame,
)

_DUMP_WAIT_S = 3.0  # how long the ranks get to write their stacks


@dataclass(frozen=True)
class Hang:
    """A rank that made no progress: which, for how long, where, and where the stacks are."""

    rank: int
    pid: int
    stalled_s: float
    counter: int
    where: Frame | None
    stacks_dir: Path

    def describe(self) -> str:
        place = f"in {self.where.describe()}" if self.where is not None else "outside the user's code"
        return (
            f"rank {self.rank} (pid {self.pid}) made no progress for {self.stalled_s:.0f} s "
            f"(after {self.counter} batches); it is stuck {place}. Every rank's stack is in {self.stacks_dir}/"
        )


class HangWatch:
    """Reads the heartbeats of one attempt's ranks and says when one hangs."""

    def __init__(self, run_dir: Path, timeout: float) -> None:
        self.run_dir = run_dir
        self.timeout = timeout
        self.interval = min(1.0, timeout / 10)
        self.clock = ProgressClock()
        self._next_check = 0.0

    def reset(self, ranks: list[int]) -> None:
        """A new attempt: forget the old counters and heartbeat files."""
        self.clock = ProgressClock()
        for rank in ranks:
            heartbeat_path(self.run_dir, rank).unlink(missing_ok=True)

    def check(self, pids: dict[int, int]) -> Hang | None:
        """``pids``: global rank -> pid of the running ranks. A ``Hang`` once one is stuck."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval
        for rank in pids:
            self.clock.observe(rank, read_heartbeat(heartbeat_path(self.run_dir, rank)), now)
        stalled = {rank: v for rank, v in self.clock.stalled(now, self.timeout).items() if rank in pids}
        if not stalled:
            return None
        frames = self.dump_stacks(pids)
        rank = min(stalled, key=lambda r: (stalled[r][0], not _in_user_code(frames.get(r, [])), r))
        counter, seconds = stalled[rank]
        where = top_user_frame(frames.get(rank, []))
        return Hang(rank, pids[rank], seconds, counter, where, stack_path(self.run_dir, rank).parent)

    def dump_stacks(self, pids: dict[int, int]) -> dict[int, list[Frame]]:
        """Every rank's stack into ``stacks/rank_N.txt``; returns each main thread's frames."""
        py_spy = shutil.which("py-spy")
        for rank, pid in pids.items():
            path = stack_path(self.run_dir, rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            if py_spy is not None:
                try:
                    with open(path, "w", encoding="utf-8") as handle:
                        subprocess.run([py_spy, "dump", "--pid", str(pid)], stdout=handle, stderr=subprocess.STDOUT,
                                       timeout=_DUMP_WAIT_S * 3, check=True)  # fmt: skip
                    continue
                except (subprocess.SubprocessError, OSError):
                    pass  # no permission to ptrace, say: the rank's own faulthandler instead
            _send(pid, STACK_DUMP_SIGNAL)
        deadline = time.monotonic() + _DUMP_WAIT_S
        while time.monotonic() < deadline and not all(self._main_frames(rank) for rank in pids):
            time.sleep(0.05)
        time.sleep(0.1)  # faulthandler writes thread by thread: let the last ones land
        return {rank: self._main_frames(rank) for rank in pids}

    def _main_frames(self, rank: int) -> list[Frame]:
        try:
            return main_thread_frames(stack_path(self.run_dir, rank).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return []


def _in_user_code(frames: list[Frame]) -> bool:
    return bool(frames) and is_user_file(frames[0].file)


def _send(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
