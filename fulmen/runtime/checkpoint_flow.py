"""A run's checkpoints: which file a run starts from, saving, restoring, the preemption stop.

Following ``ckpt_path`` from ``Trainer.fit``: ``restore_before_optimizers(ckpt_path)`` picks the
file (``checkpoint_for_run``: this run's resume checkpoint first, DESIGN "Resume precedence",
then ``resolve_ckpt_path``: a path, "best" or "last"), loads it, restores module, datamodule,
loggers and callbacks; once the optimizers exist ``restore_training_state`` puts back
precision, loop progress, optimizers and schedulers.

The checkpoint dict itself is built and read by ``checkpoint_state`` from the Trainer's
public accessors (docs/internals.md "Trainer <-> checkpoints"), which is why this object
holds the Trainer: it is the state a checkpoint describes.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from fulmen.errors import CheckpointError, MisconfigurationException
from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.runtime import checkpoint_saver
from fulmen.runtime.checkpoint import (
    load_checkpoint,
    recover_unfinished_saves,
    save_atomic,
)
from fulmen.runtime.checkpoint_state import (
    dump_checkpoint,
    restore_modules_and_callbacks,
    restore_training_state,
)
from fulmen.runtime.preemption import PreemptionHandler, hand_off
from fulmen.runtime.resume_checkpoint import (
    find_resume_checkpoint,
    save_resume_checkpoint,
)
from fulmen.runtime.stages import TrainerFn, TrainerStatus
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


class CheckpointFlow:
    """Checkpoint path resolution, save, restore, the resume checkpoint and the preemption hand-off."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer  # the state checkpoints describe (read through its public accessors)
        self.ckpt_path: str | None = None  # the file this run restored from (Lightning's trainer.ckpt_path)
        self.preemption: PreemptionHandler | None = None  # installed while fit runs
        self._warned: set[str] = set()

    # ---- which file a run starts from --------------------------------------------------
    def restore_before_optimizers(self, ckpt_path: Any, fn: TrainerFn) -> dict[str, Any] | None:
        """Lightning's first restore phase (module, datamodule, loggers, callbacks); returns the
        checkpoint for ``restore_training_state`` once the optimizers exist, or None."""
        path = self.checkpoint_for_run(ckpt_path) if fn is TrainerFn.FITTING else self.resolve_ckpt_path(ckpt_path)
        if path is None:
            return None
        self.ckpt_path = path
        checkpoint = load_checkpoint(path, map_location=self.trainer.strategy.root_device)
        restore_modules_and_callbacks(self.trainer, checkpoint, source=path)
        return checkpoint

    def restore_training_state(self, checkpoint: dict[str, Any] | None) -> None:
        """Lightning's second phase while fitting: precision, loop progress, optimizers, schedulers."""
        if checkpoint is not None:
            restore_training_state(self.trainer, checkpoint, source=self.ckpt_path)

    def checkpoint_for_run(self, ckpt_path: Any) -> str | None:
        """The file fit resumes from: this run's resume checkpoint beats ``ckpt_path`` (DESIGN)."""
        run_dir = self.trainer.strategy.rank_info.run_dir
        if run_dir:
            found = find_resume_checkpoint(run_dir)
            if found is not None:
                return os.fspath(found)
        return self.resolve_ckpt_path(ckpt_path)

    def resolve_ckpt_path(self, ckpt_path: Any) -> str | None:
        """A checkpoint file for ``ckpt_path``: a path, "best" or "last" (Lightning's meanings)."""
        if ckpt_path == "best":
            return self._best_checkpoint()
        if ckpt_path == "last":
            return self._last_checkpoint()
        return os.fspath(ckpt_path) if ckpt_path is not None else None

    def _best_checkpoint(self) -> str:
        cb = self.trainer.checkpoint_callback
        path = getattr(cb, "best_model_path", "") if cb is not None else ""
        if not path:
            what = "is not configured" if cb is None else "has not saved a best model"
            raise ValueError(  # Lightning's type for this mistake
                f'ckpt_path="best" is set but ModelCheckpoint {what}.\n'
                "HINT: pass the model (trainer.test(model)) to use its current weights, fit with a "
                "ModelCheckpoint first, or pass a checkpoint file path."
            )
        return os.fspath(path)

    def _last_checkpoint(self) -> str | None:
        """The newest last*.ckpt of any checkpoint callback (Lightning's _find_last_checkpoints)."""
        candidates = set()
        for cb in self.trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if dirpath and os.path.isdir(dirpath):
                recover_unfinished_saves(dirpath)  # a last.ckpt a killed run wrote but did not rename
                candidates |= {
                    os.path.join(dirpath, name)
                    for name in os.listdir(dirpath)
                    if name.startswith("last") and name.endswith(".ckpt")
                }
        if not candidates:
            message = ('ckpt_path="last" is set, but there is no last checkpoint; nothing is loaded.\n'
                       "HINT: ModelCheckpoint(save_last=True).")  # fmt: skip
            if message not in self._warned:
                self._warned.add(message)
                warnings.warn(message, stacklevel=4)
            return None
        return max(candidates, key=os.path.getmtime)

    # ---- saving -----------------------------------------------------------------------
    def save_checkpoint(self, filepath: str | os.PathLike[str], weights_only: bool = False) -> None:
        """Write a checkpoint of the current state (every rank builds it, global rank 0 writes).

        During a run the file's fsync and rename happen in the background while training goes
        on (``finish_pending_saves`` waits for them); outside a run the file is in place on return.
        """
        trainer = self.trainer
        if trainer.lightning_module is None:
            raise MisconfigurationException(
                "trainer.save_checkpoint() needs a model, but no fit/validate/test has attached one.\n"
                "HINT: call it after (or during) trainer.fit(model)."
            )
        checkpoint = dump_checkpoint(trainer, weights_only=weights_only)
        if trainer.is_global_zero:
            if trainer.state.status == TrainerStatus.RUNNING:
                checkpoint_saver.save_in_background(checkpoint, filepath)
            else:
                save_atomic(checkpoint, filepath)
        trainer.strategy.barrier("save_checkpoint")

    def finish_pending_saves(self, failing: bool = False) -> None:
        """Wait until the checkpoints saved in the background during this run are in place.

        A failed background save is raised, unless the run is already failing: then it is a
        warning, so that it does not hide the original error.
        """
        if not failing:
            checkpoint_saver.wait_for_pending_saves()
            return
        if checkpoint_saver.has_pending_saves():
            rank_zero_info("Waiting for checkpoints still being written before stopping ...")
        try:
            checkpoint_saver.wait_for_pending_saves()
        except CheckpointError as err:
            warnings.warn(str(err), RuntimeWarning, stacklevel=2)

    # ---- preemption -------------------------------------------------------------------
    def install_preemption(self) -> PreemptionHandler:
        """Signal handlers that only set a flag, for the length of a fit."""
        handler = PreemptionHandler()
        handler.install()
        self.preemption = handler
        return handler

    def remove_preemption(self) -> None:
        """Put back the signal handlers that were there before the fit."""
        if self.preemption is not None:
            self.preemption.restore()
        self.preemption = None

    def check_preemption(self) -> None:
        """At a step boundary: if a stop signal arrived (agreed by all ranks), save and exit 75."""
        handler = self.preemption
        strategy = self.trainer.strategy
        if handler is None or not handler.stop_requested(strategy):
            return
        checkpoint = dump_checkpoint(self.trainer, weights_only=False)
        run_dir = strategy.rank_info.run_dir or self.trainer.default_root_dir
        if self.trainer.is_global_zero:
            save_resume_checkpoint(checkpoint, run_dir)
        strategy.barrier("preemption")
        hand_off(strategy.rank_info)
        raise SystemExit(PREEMPTED_EXIT_CODE)
