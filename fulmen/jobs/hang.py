"""The progress watchdog's shared parts: heartbeat files, the stack-dump signal, reading stacks.

A rank that hangs (a deadlock, a sleep, a peer that never arrives) makes no training progress
while its process looks alive. Each rank reports a heartbeat, its batch counter, from a
background thread (``fulmen.runtime.progress_watchdog``): the training loop only increments
an int, no system call or host sync per step. Whoever watches (the local launcher, or the
rank itself under torchrun/srun) sees a counter that has not moved for the hang timeout, gets
every rank's Python stack into ``<run_dir>/stacks/rank_N.txt`` (py-spy where installed, else
``faulthandler`` through :data:`STACK_DUMP_SIGNAL`, registered by the rank entry), names the
stuck rank and its top user frame, and stops the job with ``HANG_EXIT_CODE``.

This module imports nothing of fulmen above ``jobs`` and no torch: the rank entry, the
launcher and the ranks read it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

HANG_TIMEOUT_VARIABLE = "FULMEN_HANG_TIMEOUT"
"""Seconds without progress before a rank counts as hung. Set by the local launcher from
``--hang-timeout``; set it yourself under torchrun/srun to turn on the rank-side watchdog."""
HANG_WATCHER_VARIABLE = "FULMEN_HANG_WATCHER"
"""``launcher`` when the local launcher watches the heartbeats (the ranks then only report)."""
DEFAULT_HANG_TIMEOUT_S = 600.0

STACK_DUMP_SIGNAL = signal.SIGURG
"""The signal that makes a rank write every thread's Python stack (``faulthandler``).

SIGUSR1/SIGUSR2 are preemption signals and SIGQUIT/SIGTERM/SIGINT stop a run; SIGURG (socket
out-of-band data) is used by nothing in a training process, and its default action is to be
ignored, so a process that has not registered the dump is not harmed by it."""

_FAULTHANDLER_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in (?P<func>\S+)')
_PY_SPY_FRAME = re.compile(r"^\s+(?P<func>\S+) \((?P<file>.+):(?P<line>\d+)\)")
_FULMEN_DIR = str(Path(__file__).resolve().parent.parent)
_LIBRARY_DIRS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def heartbeat_path(run_dir: str | os.PathLike[str], rank: int) -> Path:
    """``<run_dir>/heartbeat/rank_N``: the rank's batch counter, rewritten when it moves."""
    return Path(run_dir) / "heartbeat" / f"rank_{rank}"


def stack_path(run_dir: str | os.PathLike[str], rank: int) -> Path:
    """``<run_dir>/stacks/rank_N.txt``: where the rank's stacks go when the watchdog fires."""
    return Path(run_dir) / "stacks" / f"rank_{rank}.txt"


class HeartbeatFile:
    """One open file a rank rewrites in place with its counter (fixed width: one ``pwrite``)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)

    def write(self, counter: int) -> None:
        os.pwrite(self._fd, b"%20d\n" % counter, 0)

    def close(self) -> None:
        os.close(self._fd)


def read_heartbeat(path: Path) -> int | None:
    """The counter in a heartbeat file, or None when there is none (yet) or it is unreadable."""
    try:
        return int(path.read_bytes().strip() or b"x")
    except (OSError, ValueError):
        return None


def is_user_file(filename: str) -> bool:
    """Whether ``filename`` is the user's code: not fulmen, not the standard library, not an
    installed package (torch included)."""
    path = os.path.abspath(filename)
    if filename.startswith("<") or path.startswith(_FULMEN_DIR + os.sep):
        return False
    return not any(path.startswith(d + os.sep) for d in _LIBRARY_DIRS if d)


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str

    def describe(self) -> str:
        return f"{self.function} at {self.file}:{self.line}"


def main_thread_frames(stack_text: str) -> list[Frame]:
    """The main thread's frames, most recent first, from a faulthandler or py-spy dump.

    The main thread is the block that runs the rank entry (or runpy), else faulthandler's
    "Current thread", else py-spy's "MainThread", else the last block.
    """
    blocks: list[tuple[str, list[Frame]]] = []
    for line in stack_text.splitlines():
        match = _FAULTHANDLER_FRAME.match(line) or _PY_SPY_FRAME.match(line)
        if match:
            if not blocks:
                blocks.append(("", []))
            blocks[-1][1].append(Frame(match["file"], int(match["line"]), match["func"]))
        elif line.strip() and not line.startswith(" "):
            blocks.append((line, []))
    blocks = [(head, frames) for head, frames in blocks if frames]
    if not blocks:
        return []
    for wanted in (lambda h, f: any(x.file.endswith(("rank_entry.py", "runpy.py")) for x in f),
                   lambda h, f: h.startswith("Current thread"), lambda h, f: '"MainThread"' in h):
        for head, frames in blocks:
            if wanted(head, frames):
                return frames
    return blocks[-1][1]


def top_user_frame(frames: list[Frame]) -> Frame | None:
    """The most recent frame in the user's own code (where "stuck" means something to them)."""
    return next((frame for frame in frames if is_user_file(frame.file)), None)


@dataclass
class ProgressClock:
    """When each rank's counter last moved (the watcher's clock, not the ranks')."""

    last: dict[int, tuple[int, float]] = field(default_factory=dict)  # rank -> (counter, since)

    def observe(self, rank: int, counter: int | None, now: float) -> None:
        """Note ``rank``'s counter; a rank counts from its first heartbeat on."""
        if counter is None:
            return
        seen = self.last.get(rank)
        if seen is None or seen[0] != counter:
            self.last[rank] = (counter, now)

    def stalled(self, now: float, timeout: float) -> dict[int, tuple[int, float]]:
        """``rank -> (counter, seconds without progress)`` of the ranks stalled for ``timeout``."""
        return {rank: (counter, now - since) for rank, (counter, since) in self.last.items() if now - since >= timeout}


def hang_timeout_from(environ: dict[str, str] | os._Environ[str]) -> float | None:
    """The hang timeout a rank was given (``FULMEN_HANG_TIMEOUT``), None when off or invalid."""
    raw = environ.get(HANG_TIMEOUT_VARIABLE)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        print(f"fulmen: warning: {HANG_TIMEOUT_VARIABLE}={raw!r} is not a number of seconds; "
              "the hang watchdog is off.", file=sys.stderr)  # fmt: skip
        return None
    return value if value > 0 else None


def register_stack_dump(run_dir: str | None, rank: int | None) -> Path | None:
    """Make :data:`STACK_DUMP_SIGNAL` write every thread's stack to ``<run_dir>/stacks/rank_N.txt``.

    Both rank entries (local and SLURM) call this first thing, so the launcher's watchdog, or a
    person (``kill -URG PID``, ``scancel --signal=URG JOB``), can ask a live rank where it is.
    Returns the file, or None when the rank has no run dir or rank (nothing is registered).
    """
    import faulthandler

    if not run_dir or rank is None:
        return None
    path = stack_path(run_dir, rank)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - open for the life of the rank
    except OSError:
        return None
    faulthandler.register(STACK_DUMP_SIGNAL, file=handle, all_threads=True, chain=False)
    return path


def tidy_rank_files(run_dir: str | None, rank: int | None) -> None:
    """At a rank's normal exit: remove its heartbeat and its stack file when nothing was dumped,
    and their folders once empty, so a finished run dir holds only what tells a story.

    A rank the watchdog stops leaves through ``os._exit`` and keeps both (its stacks are the
    evidence); any other file found here is left alone.
    """
    if not run_dir or rank is None:
        return
    stacks = stack_path(run_dir, rank)
    try:
        if stacks.stat().st_size == 0:
            stacks.unlink()
    except OSError:
        pass
    heartbeat_path(run_dir, rank).unlink(missing_ok=True)
    for folder in (stacks.parent, heartbeat_path(run_dir, rank).parent):
        try:
            folder.rmdir()  # only when empty: another rank may still be running
        except OSError:
            pass
