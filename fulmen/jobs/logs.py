"""Following a run's log files: the one ``tail -F`` of fulmen.

Every backend writes rank output to files (``<run_dir>/logs/rank_N.log``, torchx-local's
``combined.log`` per replica); a launcher that waits, or ``fulmen logs --follow``, echoes them as
they grow. Two shapes of the same reading:

- :class:`LogFollower`: a chunk of new text per ``pump()`` call, for wait loops that poll a
  scheduler anyway (no thread). It follows a rotated file (a requeued SLURM run moves
  ``rank_N.log`` aside and starts a new one) after finishing the old one.
- :func:`file_lines`: an iterator of complete lines, for ``fulmen logs``.
"""

from __future__ import annotations

import codecs
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from fulmen.errors import LaunchError


class LogFollower:
    """``tail -F`` for one file: each ``pump()`` writes the text added since the last one.

    A file that does not exist yet is not an error (the job may still be queued). When the
    path gets a new file (rotation), the rest of the old one is written first.
    """

    def __init__(self, path: Path, stream: IO[str] | None = None) -> None:
        self.path = Path(path)
        self.stream = stream
        self._handle: Any = None
        self._inode: int | None = None

    def pump(self, stream: IO[str] | None = None) -> None:
        """Write what is new to ``stream`` (default: the follower's stream, else stdout)."""
        out = stream or self.stream or sys.stdout
        try:
            inode: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._handle is not None:
            self._copy(out)
            if inode is not None and inode != self._inode:
                self._handle.close()
                self._handle = None
        if self._handle is None and inode is not None:
            try:
                # newline="": a progress bar's \r must reach the console as \r (redrawn in place), not as \n.
                self._handle = open(self.path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115 - kept open
            except FileNotFoundError:
                return  # removed between stat and open: the next pump sees its successor
            self._inode = inode
            self._copy(out)

    def _copy(self, stream: IO[str]) -> None:
        data = self._handle.read()
        if data:
            stream.write(data)
            stream.flush()

    def close(self) -> None:
        """Release the open file (the follower can be pumped again; it reopens the path)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def file_lines(path: Path, *, follow: bool, is_done: Callable[[], bool], poll_s: float = 0.5) -> Iterator[str]:
    """A file's lines (without their newline); with ``follow``, keep reading as it grows until ``is_done()``.

    After ``is_done()`` turns true the file is read once more, so output written just before
    the job ended is not lost.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset, pending, finished = 0, "", not follow
    while True:
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        offset += len(data)
        *complete, pending = (pending + decoder.decode(data)).split("\n")
        yield from complete
        if data:
            continue  # read again at once: the file may have grown meanwhile
        if finished:
            if pending:
                yield pending
            return
        if is_done():
            finished = True
            continue
        time.sleep(poll_s)


def earlier_attempts(run_dir: Path, rank: int) -> list[Path]:
    """``logs/rank_N.attempt_K.log`` of earlier attempts (restarts, requeues), oldest first."""
    return sorted(
        (Path(run_dir) / "logs").glob(f"rank_{rank}.attempt_*.log"),
        key=lambda p: int(p.stem.rsplit("_", 1)[-1]),
    )


def earlier_attempts_text(run_dir: Path, rank: int) -> Iterator[str]:
    """Earlier attempts' logs, each under a ``===== name =====`` header, then the latest's header."""
    attempts = earlier_attempts(run_dir, rank)
    for path in attempts:
        yield f"===== {path.name} =====\n"
        yield path.read_text(errors="replace")
    if attempts:
        yield f"===== rank_{rank}.log (latest attempt) =====\n"


def rank_log_text(run_dir: Path, rank: int) -> Iterator[str]:
    """Rank ``rank``'s whole log as it stands: every attempt, oldest first (``fulmen logs``).

    Raises LaunchError (before yielding anything) when the rank has written no log yet.
    """
    current = Path(run_dir) / "logs" / f"rank_{rank}.log"
    if not current.exists() and not earlier_attempts(run_dir, rank):
        raise LaunchError(f"no log for rank {rank} yet ({current}); the job may still be queued.")
    yield from earlier_attempts_text(run_dir, rank)
    if current.exists():
        yield current.read_text(errors="replace")
