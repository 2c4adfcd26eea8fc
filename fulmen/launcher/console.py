"""The local launcher's console: rank 0's output byte for byte, other ranks' errors in between.

A script started by ``launch`` (or by ``python train.py`` with ``Trainer(devices=N)``) must
print exactly what it prints without fulmen, as torchrun leaves it: stdout stays stdout, stderr
stays stderr, carriage returns (a tqdm bar redrawing in place) and partial lines pass through,
nothing is prefixed. So the console rank writes into two pipes that the launcher copies, raw
and unchanged, to its own stdout and stderr and into ``logs/rank_N.log``. Reading lines out of
a log file and printing them (torchrun's ``--tee``) cannot do that: it turns ``\\r`` into new
lines and prefixes the pieces of a line that was still being written.

Other ranks write into their log files only. What the console shows of them are their errors
(whole tracebacks and lines naming an error), prefixed ``[rankN]:``, as whole lines that never
cut into a line the console rank has not finished: they wait for its next newline, or for the
end of its output.
"""

from __future__ import annotations

import os
import re
import select
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

STDOUT, STDERR = 1, 2
FINISH_TIMEOUT_S = 5.0  # after the ranks are gone: how long a pipe may stay open (a straggling grandchild)
_READ_SIZE = 65536
_ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|\b[A-Za-z_][\w.]*(Error|Exception)\b: ")
_TRACEBACK_HEADER = "Traceback (most recent call last)"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_TRACEBACK_CONTINUES = ("During handling of the above exception", "The above exception was the direct cause")


def is_error_line(line: str) -> bool:
    """Lines of other ranks' logs worth showing live: a traceback starts, or an error is named."""
    return bool(_ERROR_LINE.search(line))


class Console:
    """The launcher's stdout and stderr, shared by the console rank's raw bytes and others' lines.

    ``write_raw`` passes bytes through unchanged; ``note`` writes one whole line to stderr,
    held back while a raw stream is in the middle of a line (the console is usually one
    terminal, so either stream being mid-line counts).
    """

    def __init__(self, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
        sys.stdout.flush()  # what the launcher itself printed before comes first
        sys.stderr.flush()
        self._streams = {STDOUT: stdout or sys.stdout.buffer, STDERR: stderr or sys.stderr.buffer}
        self._lock = threading.Lock()
        self._mid_line: set[int] = set()
        self._held: list[bytes] = []

    def write_raw(self, stream: int, data: bytes) -> None:
        """Bytes of the console rank, as they came."""
        if not data:
            return
        with self._lock:
            self._write(stream, data)
            if data.endswith(b"\n"):
                self._mid_line.discard(stream)
                self._release_held()
            else:
                self._mid_line.add(stream)

    def end_raw(self, stream: int) -> None:
        """The console rank's ``stream`` is closed: held lines need not wait for it any longer."""
        with self._lock:
            self._mid_line.discard(stream)
            self._release_held()

    def note(self, line: str) -> None:
        """One whole line for stderr (another rank's error), printed at the next line boundary."""
        data = line.rstrip("\n").encode("utf-8", errors="replace") + b"\n"
        with self._lock:
            self._held.append(data)
            self._release_held()

    def _release_held(self) -> None:
        if self._mid_line or not self._held:
            return
        held, self._held = self._held, []
        self._write(STDERR, b"".join(held))

    def _write(self, stream: int, data: bytes) -> None:
        target = self._streams[stream]
        try:
            target.write(data)
            target.flush()
        except BrokenPipeError:
            silence_closed_stream(target)  # the console went away (`| head`): the log file still gets everything
        except ValueError:
            pass  # closed by our own teardown


class ConsoleRank:
    """One rank whose stdout and stderr go to the console unchanged and, interleaved, to its log.

    ``stdout_path`` / ``stderr_path`` name the write ends of two pipes (``/dev/fd/N``) for the
    process starter to open; ``started()`` closes the launcher's own copies once the rank runs,
    so the copying ends when the rank (and whatever inherited its output) is gone. ``prefix``
    marks the lines of a console rank that is not global rank 0 (local rank 0 of another node).
    """

    def __init__(self, console: Console, log_path: Path, prefix: str = "") -> None:
        self._console = console
        self._log = log_path.open("wb")
        self._log_lock = threading.Lock()
        self._prefix = prefix.encode()
        self._write_ends: list[int] = []
        self._pumps: list[_Pump] = []
        self._finishing = threading.Event()
        paths = []
        for stream in (STDOUT, STDERR):
            read_end, write_end = os.pipe()
            self._write_ends.append(write_end)
            paths.append(f"/dev/fd/{write_end}")
            self._pumps.append(_Pump(read_end, stream, self))
        self.stdout_path, self.stderr_path = paths
        for pump in self._pumps:
            pump.start()

    def started(self) -> None:
        """The rank process holds its ends of the pipes now; drop ours."""
        for fd in self._write_ends:
            os.close(fd)
        self._write_ends = []

    def finish(self, timeout: float = FINISH_TIMEOUT_S) -> None:
        """After the rank is gone: copy what is left in the pipes, then stop and close the log."""
        self.started()
        self._finishing.set()
        for pump in self._pumps:
            pump.join(timeout)
        with self._log_lock:
            self._log.close()

    def copy(self, stream: int, data: bytes, at_line_start: bool) -> bool:
        """Send one chunk to the console and the log; returns whether the next byte starts a line."""
        with self._log_lock:
            if not self._log.closed:
                self._log.write(data)
                self._log.flush()
        self._console.write_raw(stream, _prefixed(data, self._prefix, at_line_start) if self._prefix else data)
        return data.endswith((b"\n", b"\r"))

    @property
    def finishing(self) -> bool:
        """The rank is gone: a pipe that runs dry is done."""
        return self._finishing.is_set()

    def closed(self, stream: int) -> None:
        """One of the rank's pipes is done."""
        self._console.end_raw(stream)


class _Pump(threading.Thread):
    """Copies one pipe until it is closed (or, once the rank is gone, until it runs dry)."""

    def __init__(self, read_end: int, stream: int, rank: ConsoleRank) -> None:
        super().__init__(name=f"fulmen-console-{stream}", daemon=True)
        self._fd, self._stream, self._rank = read_end, stream, rank

    def run(self) -> None:
        at_line_start = True
        try:
            while True:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    if self._rank.finishing:
                        break
                    continue
                data = os.read(self._fd, _READ_SIZE)
                if not data:
                    break
                at_line_start = self._rank.copy(self._stream, data, at_line_start)
        finally:
            os.close(self._fd)
            self._rank.closed(self._stream)


def _prefixed(data: bytes, prefix: bytes, at_line_start: bool) -> bytes:
    """``data`` with ``prefix`` at the start of every line (a line continued across chunks gets one)."""
    pieces = data.splitlines(keepends=True)
    out = []
    for piece in pieces:
        out.append(prefix + piece if at_line_start else piece)
        at_line_start = piece.endswith((b"\n", b"\r"))
    return b"".join(out)


class ErrorTail(threading.Thread):
    """Follows other ranks' log files and shows their errors on the console, prefixed.

    A traceback is shown whole (header, frames, the exception line and a ``HINT:`` after it),
    once; ``shown`` holds the global ranks whose errors reached the console, so the end-of-run
    report does not print them a second time.
    """

    def __init__(self, console: Console, logs: dict[int, Path], poll_s: float = 0.2) -> None:
        super().__init__(name="fulmen-error-tail", daemon=True)
        self._console = console
        self._logs = logs
        self._poll_s = poll_s
        self._offsets = dict.fromkeys(logs, 0)
        self._partial = dict.fromkeys(logs, b"")
        self._filters = {rank: TracebackFilter() for rank in logs}
        self._stopping = threading.Event()
        self.shown: set[int] = set()

    def run(self) -> None:
        while not self._stopping.wait(self._poll_s):
            self._read_all(final=False)

    def stop(self) -> None:
        """After the ranks are gone: read their last lines, then stop."""
        self._stopping.set()
        self.join()
        self._read_all(final=True)

    def _read_all(self, final: bool) -> None:
        for rank, path in self._logs.items():
            try:
                with path.open("rb") as handle:
                    handle.seek(self._offsets[rank])
                    data = handle.read()
            except OSError:
                continue
            self._offsets[rank] += len(data)
            lines = _LINE_END.split(self._partial[rank] + data)  # a redrawn (\r) line counts as one too
            self._partial[rank] = lines.pop()
            if final and self._partial[rank]:
                lines.append(self._partial[rank])  # the last words, even without a newline
            for raw in lines:
                line = raw.decode("utf-8", errors="replace")
                shown = self._filters[rank].shown_part(line)
                if shown is not None:
                    self.shown.add(rank)
                    prefix = f"[rank{rank}]:"  # torch prefixes its own once a process group exists
                    self._console.note(shown if shown.startswith(prefix) else prefix + shown)


class TracebackFilter:
    """Decides, line by line, what of a rank's output is an error worth showing live."""

    def __init__(self) -> None:
        self._in_traceback = False
        self._after_exception = False

    def shown_part(self, line: str) -> str | None:
        """What of ``line`` (the next line of the rank's output) to show as part of an error, if any.

        A traceback may follow output that did not end its line; it is shown from its header on.
        """
        start = line.find(_TRACEBACK_HEADER)
        if start >= 0:
            self._in_traceback, self._after_exception = True, False
            return line[start:]
        if self._in_traceback:
            if not line.strip() or line[:1].isspace() or line.startswith(_TRACEBACK_CONTINUES):
                return line
            self._in_traceback, self._after_exception = False, True
            return line  # the exception line ends the traceback
        if not line.strip():
            return None
        if self._after_exception and line.startswith(("HINT", *_TRACEBACK_CONTINUES)):
            return line  # the rest of a message, or a chained exception coming
        self._after_exception = False
        return line if is_error_line(line) else None


def silence_closed_stream(stream: Any) -> None:
    """Point ``stream``'s descriptor at /dev/null once its reader has gone (``launch ... | head``).

    What is still buffered, and every later write (also the flush at exit), then goes nowhere
    instead of raising BrokenPipeError again: a closed console is not a training failure.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a test's BytesIO)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class _DropWhenClosed:
    """A text stream that stops writing, instead of raising, once its reader has gone."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            silence_closed_stream(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            silence_closed_stream(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def tolerate_closed_console() -> Iterator[None]:
    """While a run goes on, the launcher's own messages survive a closed stdout/stderr.

    ``launch train.py 2>&1 | head -1`` closes the pipe after one line; the next message of the
    launcher used to raise BrokenPipeError and turn a finished run into FAILED (exit 1). The
    ranks write into the run dir's logs regardless.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _DropWhenClosed(sys.stdout), _DropWhenClosed(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
