"""What ModelCheckpoint does to files besides writing them: delete, link, check, tell loggers.

During a run ``trainer.save_checkpoint`` returns before its file is in place: the fsync and the
rename finish on a background thread (``fulmen.runtime.checkpoint_saver``). So every operation
here queues behind the saves issued before it, or waits for them:

- an old top-k or ``last`` file is deleted only once the file replacing it is complete;
- a ``last`` link moves only once its target exists under its final name;
- an existence check counts queued saves and deletions as done, so the ``-vN`` counter does not
  hand out a name that a pending save is about to take;
- a logger that overrides ``after_save_checkpoint`` (to upload the files, say) finds them on disk;
- with ``save_last="link"``, a save's deletions wait until the link has moved (``HeldRemovals``).

Files are touched by rank 0 only; decisions that depend on them are broadcast, so every rank
keeps the same bookkeeping.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.checkpoint_paths import link_atomic
from fulmen.callbacks.checkpoint_schedule import broadcast
from fulmen.loggers.logger import Logger
from fulmen.runtime.checkpoint_saver import after_pending_saves, exists_after_pending_saves, wait_for_pending_saves

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


def exists_on_rank_zero(trainer: Trainer, filepath: str | os.PathLike[str]) -> bool:
    """Whether ``filepath`` exists once pending saves are done, as rank 0 sees it."""
    return bool(broadcast(trainer, exists_after_pending_saves(filepath)))


def is_removable(previous: str, current: str, dirpath: str | None, resumed: str | None) -> bool:
    """Whether ``previous`` may be deleted now that ``current`` replaces it.

    Never the file just written (a name reused by the version counter), the checkpoint the run
    resumed from, or a file outside ``dirpath`` (a path restored from another run's state).
    """
    if previous == current:
        return False
    previous_abs = Path(previous).absolute()
    if resumed is not None and previous_abs == Path(resumed).absolute():
        return False
    assert dirpath is not None
    return Path(dirpath).absolute() in previous_abs.parents


def remove_checkpoint(trainer: Trainer, filepath: str) -> None:
    """Delete ``filepath`` (rank 0) once the file that replaces it is in place."""
    if getattr(trainer, "is_global_zero", True):
        after_pending_saves(lambda: _remove_if_present(filepath), f"deleting {filepath!r}", filepath, False)


def link_checkpoint(trainer: Trainer, filepath: str, linkpath: str) -> None:
    """Point the symlink ``linkpath`` at ``filepath`` (rank 0, behind its save); then all ranks meet."""
    if getattr(trainer, "is_global_zero", True):
        after_pending_saves(
            lambda: link_atomic(filepath, linkpath), f"linking {linkpath!r} to {filepath!r}", linkpath, True
        )
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None:
        strategy.barrier()


def notify_loggers(trainer: Trainer, checkpoint_callback: Any) -> None:
    """Call every logger's ``after_save_checkpoint`` (rank 0), as Lightning does after each save.

    Only a logger that overrides the hook waits for pending saves first: the base class's hook
    does nothing, and waiting for it would put every save's fsync back on the training path.
    """
    if not getattr(trainer, "is_global_zero", True):
        return
    for logger in getattr(trainer, "loggers", ()):
        after_save = getattr(logger, "after_save_checkpoint", None)
        if after_save is None:
            continue
        if getattr(type(logger), "after_save_checkpoint", None) is not Logger.after_save_checkpoint:
            wait_for_pending_saves()
        after_save(checkpoint_callback)


class HeldRemovals:
    """Deletions held back while one save (its top-k file, then its ``last`` link) is in progress.

    Why: with ``save_last="link"`` the link may still point at the top-k file being replaced;
    deleting that first leaves ``last.ckpt`` dangling if the process is killed before the link
    moves. Held deletions are issued after the link, and queue behind it, so a kill leaves at
    worst a stale top-k file, never a dangling link. If the save fails, the held files are kept.
    """

    def __init__(self) -> None:
        self._pending: list[str] | None = None  # None: not holding

    def hold(self, filepath: str) -> bool:
        """Keep ``filepath`` for later if a hold is active; False means: delete it now."""
        if self._pending is None:
            return False
        self._pending.append(filepath)
        return True

    @contextlib.contextmanager
    def until_done(self, active: bool, remove: Callable[[str], None]) -> Iterator[None]:
        """Hold deletions inside the block (when ``active`` and not already holding), then ``remove`` them."""
        if not active or self._pending is not None:
            yield
            return
        self._pending = []
        try:
            yield
        except BaseException:
            self._pending = None
            raise
        held, self._pending = self._pending, None
        for filepath in held:
            remove(filepath)


def _remove_if_present(filepath: str) -> None:
    # lexists: a dangling ``last`` link is removed too
    if os.path.lexists(filepath):
        os.remove(filepath)
