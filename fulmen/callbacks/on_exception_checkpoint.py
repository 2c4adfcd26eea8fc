"""``OnExceptionCheckpoint``: save a checkpoint when ``fit`` fails, to resume from it.

The file is written in ``on_exception`` (the Trainer calls it after the run has stopped, so
the save is synchronous: the file is in place when the error reaches the caller). A later
successful run removes it in ``teardown``, so a stale file never outlives the failure it
records. ``fit(ckpt_path=callback.ckpt_path)`` resumes at the batch that failed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.checkpoint import Checkpoint
from fulmen.callbacks.checkpoint_files import remove_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer

__all__ = ["OnExceptionCheckpoint"]


class OnExceptionCheckpoint(Checkpoint):
    """Save ``<dirpath>/<filename>.ckpt`` when the run raises.

    Args:
        dirpath: the folder of the file; required, since an error can come before ``setup``.
        filename: the file's name without the ``.ckpt`` extension.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike[str], filename: str = "on_exception") -> None:
        super().__init__()
        if not filename:
            raise ValueError(
                "The filename cannot be empty.\n"
                "HINT: OnExceptionCheckpoint(dirpath, filename='on_exception') writes on_exception.ckpt."
            )
        if not isinstance(dirpath, (str, os.PathLike)):
            raise TypeError(
                f"OnExceptionCheckpoint(dirpath={dirpath!r}): expected a folder path (str or os.PathLike).\n"
                "HINT: OnExceptionCheckpoint('checkpoints/') writes checkpoints/on_exception.ckpt."
            )
        self.dirpath = dirpath
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint is written."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Trainer, *_: Any, **__: Any) -> None:
        # overwrites the file of an earlier failure
        trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: Trainer, *_: Any, **__: Any) -> None:
        remove_checkpoint(trainer, self.ckpt_path)
