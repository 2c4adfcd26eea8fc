"""A resume checkpoint when a stop signal finds a rank hung (issue 16.6).

The agreed stop (``preemption.py``) needs every rank at a step boundary. A rank stuck inside
``training_step`` never gets there, and its DDP peers wait in the step's gradient all-reduce
(a C++ call, where a Python signal handler never runs): before this module the launcher killed
them all after its grace, and the progress since the last checkpoint was lost.

Per rank of a multi-rank CPU fit whose state is replicated (DDP: each rank holds all of it),
with automatic optimization:

1. At every step boundary (``check_preemption``, before the stop collective) the fit loop calls
   ``at_boundary``: it keeps the loop state a checkpoint stores (counters, data position, RNG
   states: small) and the version counters of every parameter and buffer (no tensor is copied).
2. ``loss.backward()`` runs ``in_backward`` and the stop collective between ``at_boundary`` and
   ``past_boundary``: the two places where a rank waits for a peer without changing its state
   (autograd writes gradients only; the optimizer has not stepped). Leaving either takes a lock.
3. A signal wakes this module's thread through ``signal.set_wakeup_fd`` (the C-level handler
   writes the signal number even while the main thread is blocked in a collective). It gives
   the normal stop a grace (3x the longest step seen, 2-30 s). If the rank is still waiting in
   one of those two places, under the lock (so the main thread cannot leave them), and every
   parameter and buffer still has its boundary version, the live state IS the boundary's: the
   thread claims the rescue (an ``O_EXCL`` file in the resume folder: one rank saves, never a
   collective), saves the resume checkpoint of the boundary's step, asks for the requeue, and
   ends the process with ``PREEMPTED_EXIT_CODE``. The other ranks (the hung one too: it is
   never interrupted) see the claim's done-file and exit with the same code, so a launcher or
   scheduler requeues as after any preemption.
4. Otherwise it says why this rank cannot save (busy in the user's code, or a buffer such as
   BatchNorm's running statistics changed in the unfinished step's forward) and waits for a
   peer that can; if none can, the launcher stops the ranks after its grace, as before.

What is not rescued: the first step of an epoch (``invalidate`` at the epoch end: schedulers and
callbacks have moved since the last boundary), sharded strategies (reading their state is a
collective), manual optimization (the user's code steps optimizers at any point), a rank whose
``backward`` is overridden by the module (user code), and GPU ranks: with NCCL the all-reduce is
queued on the device, so a healthy rank's main thread runs on (its optimizer step is queued
behind the stuck collective) and any copy of its state to the host would wait behind it too.
Doing that safely needs a copy of the state at every boundary; not done.
"""

from __future__ import annotations

import enum
import errno
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.runtime.resume_checkpoint import resume_checkpoint_dir

MIN_GRACE_S = 2.0
MAX_GRACE_S = 30.0  # the local launcher gives the ranks 60 s after a signal, SLURM's KillWait is 30 s
_POLL_S = 0.1
CLAIM_NAME = ".rescue-claim"
DONE_NAME = ".rescue-done"


class Phase(enum.Enum):
    """Where the main thread is, as far as the rescue cares."""

    RUNNING = "running"  # anywhere else: may be changing the state
    BACKWARD = "backward"  # inside loss.backward(): gradients change, nothing a checkpoint holds
    BOUNDARY = "boundary"  # at a step boundary, in the stop collective


@dataclass(frozen=True)
class Boundary:
    """What a checkpoint of the last completed step needs beyond the live tensors."""

    step: int
    loop_state: dict[str, Any]
    versions: tuple[int, ...]


class HangRescue:
    """The rescue of one rank; ``start()`` on the main thread at fit start, ``stop()`` at its end.

    ``tensors``: every parameter and buffer a checkpoint of the module holds (their versions
    say whether the state moved since the boundary). ``loop_state``: the fit loop's state dict
    now. ``save(loop_state) -> Path``: dump the checkpoint with that loop state and save it as
    the run's resume checkpoint. ``signals``: those that ask for a stop.
    """

    def __init__(self, *, rank: int, run_dir: str | os.PathLike[str], tensors: list[Tensor],
                 loop_state: Callable[[], dict[str, Any]], save: Callable[[dict[str, Any]], Path],
                 signals: Iterable[signal.Signals], on_rescued: Callable[[Path, int], None] = lambda path, step: None,
                 where: Callable[[], str] = lambda: "is busy") -> None:  # fmt: skip
        self.rank = rank
        self.folder = resume_checkpoint_dir(run_dir)
        self._tensors = tensors
        self._loop_state = loop_state
        self._save = save
        self._signals = {int(s) for s in signals}
        self._on_rescued = on_rescued
        self._where = where
        self._lock = threading.Lock()
        self._phase = Phase.RUNNING
        self._boundary: Boundary | None = None
        self._last_boundary_at: float | None = None
        self.longest_step_s = 0.0
        self._boundaries = 0  # how many this fit has passed
        self._stopping = False  # the ranks agreed to stop: the normal path saves
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None
        self._previous_fd = -1
        self._said: str | None = None

    # ---- the main thread --------------------------------------------------------------
    def start(self) -> None:
        """Route signal numbers to this rank's rescue thread (main thread only: Python's rule)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="fulmen-hang-rescue", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The fit is over: the thread ends, the previous wakeup fd comes back."""
        self._stop.set()
        if self._writer is None:
            return
        try:
            self._writer.send(b"\0")  # wakes the thread now (0 is no signal): the fit's end waits for nothing
        except OSError:
            pass
        if threading.current_thread() is threading.main_thread():
            signal.set_wakeup_fd(self._previous_fd)
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        for end in (self._reader, self._writer):
            if end is not None:
                end.close()
        self._reader = self._writer = None

    def at_boundary(self) -> None:
        """A step ended: remember its loop state and the tensors' versions; the stop collective follows."""
        now = time.monotonic()
        state = self._loop_state()
        boundary = Boundary(int(state["global_step"]), state, self._versions())
        with self._lock:  # held by a rescue in progress: this thread then waits for the process to end
            if self._last_boundary_at is not None:
                self.longest_step_s = max(self.longest_step_s, now - self._last_boundary_at)
            self._last_boundary_at = now
            self._boundary = boundary
            self._boundaries += 1
            self._phase = Phase.BOUNDARY

    def past_boundary(self, stopping: bool) -> None:
        """The stop collective returned; ``stopping``: the ranks agreed to stop (the normal save follows)."""
        with self._lock:
            self._phase = Phase.RUNNING
            self._stopping = self._stopping or stopping

    @contextmanager
    def in_backward(self) -> Iterator[None]:
        """Around ``loss.backward()``: a rank waiting in its gradient all-reduce can be rescued."""
        with self._lock:
            self._phase = Phase.BACKWARD
        try:
            yield
        finally:
            with self._lock:
                self._phase = Phase.RUNNING

    def invalidate(self) -> None:
        """The state moved on in ways the versions do not show (an epoch's end): no boundary until the next one."""
        with self._lock:
            self._boundary = None
            self._last_boundary_at = None

    # ---- the rescue thread ------------------------------------------------------------
    def grace_s(self) -> float:
        """How long the normal stop gets before this rank concludes that a peer is stuck."""
        return min(MAX_GRACE_S, max(MIN_GRACE_S, 3 * self.longest_step_s))

    def _versions(self) -> tuple[int, ...]:
        return tuple(t._version for t in self._tensors)

    def _watch(self) -> None:
        try:
            self._rescue_after_signal()
        except Exception as err:  # noqa: BLE001 - a thread's failure must be said, not lost
            _say(f"rank {self.rank}: the hang rescue failed ({type(err).__name__}: {err}); a stop now "
                 "needs every rank at a step boundary, as without it.")  # fmt: skip

    def _rescue_after_signal(self) -> None:
        signum = self._wait_for_signal()
        if signum is None:
            return
        signalled = time.monotonic()
        while not self._stop.wait(_POLL_S):
            done = self._peer_rescue()
            if done is not None:
                self._exit_after_peer(*done)
            if self._stopping or time.monotonic() - signalled < self.grace_s():
                continue
            reason = self.try_rescue(signal.Signals(signum), time.monotonic() - signalled)
            if reason is not None and reason != self._said:
                self._said = reason
                _say(f"rank {self.rank}: {reason}; waiting for a peer rank to save the resume checkpoint.")

    def _wait_for_signal(self) -> int | None:
        """The number of the first stop signal (None once stopped); other bytes are passed on."""
        assert self._reader is not None
        reader = self._reader
        while not self._stop.is_set():
            ready, _, _ = select.select([reader], [], [], 0.5)
            if not ready:
                continue
            try:
                data = reader.recv(64)
            except OSError:
                return None
            if self._previous_fd != -1:  # someone else's wakeup fd (an event loop): it still gets them
                try:
                    os.write(self._previous_fd, data)
                except OSError:
                    pass
            for number in data:
                if number in self._signals:
                    return number
        return None

    def try_rescue(self, sig: signal.Signals, waited_s: float) -> str | None:
        """Save and end the process when the state is a boundary's; else why not (None: a peer saves).

        Called by this rank's thread once the grace after ``sig`` is over (``waited_s`` ago).
        """
        with self._lock:  # the main thread cannot leave BACKWARD / BOUNDARY while we hold it
            boundary, phase = self._boundary, self._phase
            if boundary is None:
                return "the last step boundary is not this rank's state (the stop came in an epoch's first step)"
            if phase is Phase.RUNNING:
                return f"this rank {self._where()}, not at a point where its state is a step boundary's"
            if self._versions() != boundary.versions:
                return (f"a parameter or buffer changed since step {boundary.step} (BatchNorm's running "
                        "statistics in a forward, say): its state is not a step boundary's")  # fmt: skip
            if not self._claim():
                return None  # a peer saves: its done-file ends this process
            situation = (
                f"step {boundary.step + 1} did not end within {waited_s:.0f} s of {sig.name} (this rank waits "
                "in backward for a peer rank's gradients)"
                if phase is Phase.BACKWARD
                else f"the ranks did not agree to stop within {waited_s:.0f} s of {sig.name} (this rank waits "
                f"at the boundary after step {boundary.step} for a peer rank)"
            )
            try:
                path = self._save(boundary.loop_state)
            except Exception as err:  # noqa: BLE001 - the rescue is a last resort: say why, leave the rest as it was
                _say(f"rank {self.rank}: {situation}; saving the resume checkpoint of step {boundary.step} "
                     f"failed ({type(err).__name__}: {err}).")  # fmt: skip
                return None
            _write_done(self.folder / DONE_NAME, f"{self.rank} {boundary.step} {path}")
            _say(f"rank {self.rank}: {situation}; saved the resume checkpoint of step {boundary.step} (the last "
                 f"completed step) to {path} without collectives; exiting with {PREEMPTED_EXIT_CODE}.")  # fmt: skip
            self._on_rescued(path, boundary.step)
            _exit(PREEMPTED_EXIT_CODE)
        return None  # pragma: no cover - _exit does not return

    def _claim(self) -> bool:
        """Whether this rank is the one that saves (the first to create the claim file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.folder / CLAIM_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError as err:
            if err.errno == errno.EEXIST:
                return False
            raise
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{self.rank}\n")
        return True

    def _peer_rescue(self) -> tuple[int, int, str] | None:
        if self._boundaries == 0:  # before this attempt's first collective a done-file is a previous attempt's
            return None
        try:
            rank, step, path = (self.folder / DONE_NAME).read_text(encoding="utf-8").split(" ", 2)
        except (OSError, ValueError):
            return None
        return int(rank), int(step), path.strip()

    def _exit_after_peer(self, rank: int, step: int, path: str) -> None:
        _say(f"rank {self.rank}: rank {rank} saved the resume checkpoint of step {step} ({path}); this rank "
             f"{self._where()}: exiting with {PREEMPTED_EXIT_CODE}.")  # fmt: skip
        _exit(PREEMPTED_EXIT_CODE)


def remove_rescue_marks(run_dir: str | os.PathLike[str]) -> None:
    """Forget a previous attempt's rescue (rank 0, at fit start, before any collective of this attempt)."""
    folder = resume_checkpoint_dir(run_dir)
    for name in (CLAIM_NAME, DONE_NAME):
        (folder / name).unlink(missing_ok=True)


def _write_done(path: Path, text: str) -> None:
    temp = path.with_name(path.name + f".{os.getpid()}")
    temp.write_text(text + "\n", encoding="utf-8")
    os.replace(temp, path)


def _say(message: str) -> None:
    print(f"fulmen: {message}", file=sys.stderr, flush=True)


def _exit(code: int) -> None:
    """End the process from this thread: the main thread is stuck in a collective or the user's code."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
