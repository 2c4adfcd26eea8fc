"""Checkpoint saves whose disk flush runs in the background, in order.

Why: an atomic save is "write a temp file, fsync it, rename it into place, fsync the folder".
Writing (serialising into the page cache) is about as fast as a plain ``torch.save``; the
fsync waits for the disk, which took 1-2x as long again on the machines we measured
(bench/checkpoint_io.py). Training does not need to wait for the disk: once the temp file is
written, the checkpoint's content is fixed (later changes to the weights cannot reach it) and
a killed process cannot lose it any more (the page cache outlives the process). So
``save_in_background`` writes the temp file in the caller and hands the fsync and the rename
to one worker thread. Every guarantee of the synchronous ``save_atomic`` is kept:

- a file under its final name is complete and durable (the rename still comes after the fsync);
- what must come after a save (deleting the top-k file it supersedes, moving a ``last`` link)
  is queued behind it with ``after_pending_saves``, so it runs only once the new file is in place;
- a process killed between writing and renaming leaves a complete temp file, which
  ``checkpoint_recovery.recover_unfinished_saves`` moves into place on the next start;
- a failure (disk full, permissions) drops the rest of the queue, so nothing is deleted for a
  file that never arrived, and is raised by the next save or ``wait_for_pending_saves``.

The Trainer waits for pending saves at the end of every run and before anything in this
process reads a checkpoint (``load_checkpoint`` waits, without raising, so a read sees what
the process saved). An ``atexit`` hook waits too, for scripts that save outside a Trainer run.
One process-wide queue: the files of one process go to disk in the order they were saved.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulmen.errors import CheckpointError
from fulmen.runtime.checkpoint import PathLike, discard_temp, move_into_place, write_temp


@dataclass
class _Finish:
    """Fsync ``temp`` (through its still-open ``fd``) and rename it to ``final``."""

    fd: int
    temp: Path
    final: Path


@dataclass
class _Action:
    """Something to run once every save queued before it is in place (a deletion, a link)."""

    run: Callable[[], None]
    what: str


class _SaveQueue:
    """The worker thread and its FIFO; the module functions below use one per process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: deque[_Finish | _Action] = deque()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._error: CheckpointError | None = None
        # what a path will be once the queue has run (last queued operation wins): lets
        # ModelCheckpoint's "does this name exist?" see files that are still on their way
        self._will_exist: dict[str, bool] = {}

    def put(self, item: _Finish | _Action, path: Path | None, exists_after: bool) -> None:
        with self._cond:
            if path is not None:
                self._will_exist[os.path.abspath(path)] = exists_after
            self._items.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="fulmen-checkpoint-saver", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._items and not self._busy

    def will_exist(self, path: PathLike) -> bool | None:
        with self._cond:
            return self._will_exist.get(os.path.abspath(path))

    def raise_error(self) -> None:
        """Raise (once) the failure of an earlier background save."""
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self) -> None:
        with self._cond:
            while self._items or self._busy:
                self._cond.wait()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                item = self._items.popleft()
                self._busy = True
            try:
                if isinstance(item, _Finish):
                    move_into_place(item.temp, item.final, fd=item.fd)
                else:
                    item.run()
            except BaseException as err:  # noqa: BLE001 - reported to the saving thread, never lost
                self._fail(item, err)
            with self._cond:
                self._busy = False
                if not self._items:
                    self._will_exist.clear()
                self._cond.notify_all()

    def _fail(self, item: _Finish | _Action, err: BaseException) -> None:
        what = f"moving checkpoint {str(item.final)!r} into place" if isinstance(item, _Finish) else item.what
        error = CheckpointError(
            f"A background checkpoint save failed while {what}: {type(err).__name__}: {err}.\n"
            "Nothing queued after it was done (no older checkpoint was deleted for it).\n"
            "HINT: check free space and permissions of the checkpoint folder."
        )
        error.__cause__ = err
        with self._cond:
            dropped = list(self._items)
            self._items.clear()
            if self._error is None:
                self._error = error
        for later in dropped:
            if isinstance(later, _Finish):
                discard_temp(later.temp, later.fd)

    def reset_after_fork(self) -> None:
        # a forked child (a DataLoader worker) has the parent's queue but not its thread
        self.__init__()  # type: ignore[misc]


_QUEUE = _SaveQueue()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_QUEUE.reset_after_fork)


def save_in_background(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` to a temp file next to ``path`` now; fsync and rename it in the background.

    Returns the final path, which exists once ``wait_for_pending_saves`` returns (or the
    worker got to it). Raises the failure of an earlier background save first, if there was one.
    """
    _QUEUE.raise_error()
    final = Path(path)
    temp, fd = write_temp(obj, final)
    _QUEUE.put(_Finish(fd, temp, final), final, exists_after=True)
    return final


def after_pending_saves(action: Callable[[], None], what: str, path: PathLike | None = None,
                        exists_after: bool = False) -> None:  # fmt: skip
    """Run ``action`` once every save queued so far is in place (now, if none is pending).

    ``what`` describes it for an error message; ``path``/``exists_after`` say which file it
    creates or deletes, for ``exists_after_pending_saves``.
    """
    if _QUEUE.idle():
        _QUEUE.raise_error()
        action()
        return
    _QUEUE.put(_Action(action, what), Path(path) if path is not None else None, exists_after)


def wait_for_pending_saves(*, raise_errors: bool = True) -> None:
    """Block until every queued save is in place; raise a failure unless ``raise_errors=False``."""
    _QUEUE.wait()
    if raise_errors:
        _QUEUE.raise_error()


def has_pending_saves() -> bool:
    """Whether a background save (or an action queued behind one) has not finished yet."""
    return not _QUEUE.idle()


def exists_after_pending_saves(path: PathLike) -> bool:
    """Whether ``path`` exists, counting queued saves and deletions as done."""
    queued = _QUEUE.will_exist(path)
    return os.path.exists(path) if queued is None else queued


def _wait_at_exit() -> None:
    try:
        wait_for_pending_saves()
    except CheckpointError as err:
        print(f"fulmen: {err}", file=sys.stderr)


atexit.register(_wait_at_exit)
