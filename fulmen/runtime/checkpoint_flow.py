"""A run's checkpoints: which file a run starts from, saving, restoring, the preemption stop.

Following ``ckpt_path`` from ``Trainer.fit``: ``restore_before_optimizers(ckpt_path, fn)`` picks
the file (``fit_checkpoint_choice``: this run's resume checkpoint or ``ckpt_path``'s file, the
newest progress among the run's own files, see ``resume_selection``; ``resolve_ckpt_path``
turns a path, "best" or "last" into a file), says so on rank 0, loads it and restores module,
datamodule, loggers and callbacks; once the optimizers exist ``restore_training_state`` puts
back precision, loop progress, optimizers and schedulers. A completed fit then drops the run's
resume checkpoint (``drop_resume_checkpoint``).

The checkpoint dict itself is built and read by ``checkpoint_state`` from the Trainer's
public accessors (docs/internals.md "Trainer <-> checkpoints"), which is why this object
holds the Trainer: it is the state a checkpoint describes.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.errors import CheckpointError, MisconfigurationException
from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE, PREEMPTION_SAVE_FAILED_EXIT_CODE
from fulmen.runtime import checkpoint_saver, resume_selection, run_events
from fulmen.runtime.checkpoint import load_checkpoint, save_atomic
from fulmen.runtime.checkpoint_recovery import recover_unfinished_saves
from fulmen.runtime.checkpoint_state import dump_checkpoint, restore_modules_and_callbacks, restore_training_state
from fulmen.runtime.cluster import environment_for
from fulmen.runtime.hang_rescue import HangRescue, remove_rescue_marks
from fulmen.runtime.preemption import PreemptionHandler, hand_off
from fulmen.runtime.progress_watchdog import main_thread_user_frame
from fulmen.runtime.resume_checkpoint import find_resume_checkpoint, remove_resume_checkpoints, save_resume_checkpoint
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
        self.rescue: HangRescue | None = None  # with it, on several ranks of replicated state (hang_rescue)
        self.resume_choice: resume_selection.ResumeChoice | None = None  # what this fit restored, and why
        self._warned: set[str] = set()

    # ---- which file a run starts from --------------------------------------------------
    def restore_before_optimizers(self, ckpt_path: Any, fn: TrainerFn,
                                  unsafe_full_unpickle: bool = False) -> dict[str, Any] | None:  # fmt: skip
        """Lightning's first restore phase (module, datamodule, loggers, callbacks); returns the
        checkpoint for ``restore_training_state`` once the optimizers exist, or None.

        ``unsafe_full_unpickle``: load with the full unpickler (``fit(unsafe_full_unpickle=True)``).
        """
        self.resume_choice = None
        if fn is TrainerFn.FITTING:
            self.resume_choice = self.fit_checkpoint_choice(ckpt_path)
            path = self.resume_choice.path if self.resume_choice is not None else None
        else:
            path = self.resolve_ckpt_path(ckpt_path)
        if path is None:
            return None
        self.ckpt_path = path
        self._announce_restore(start=True)
        strategy = self.trainer.strategy
        checkpoint = load_checkpoint(path, map_location=strategy.root_device, unsafe_full_unpickle=unsafe_full_unpickle)
        restore_modules_and_callbacks(self.trainer, checkpoint, source=path)
        if fn is not TrainerFn.FITTING:
            self._announce_restore(start=False)
        return checkpoint

    def restore_training_state(self, checkpoint: dict[str, Any] | None) -> None:
        """Lightning's second phase while fitting: precision, loop progress, optimizers, schedulers."""
        if checkpoint is None:
            return
        restore_training_state(self.trainer, checkpoint, source=self.ckpt_path)
        self._announce_restore(start=False)
        run_events.note_resumed(self.trainer.strategy.rank_info, self.trainer.global_step, self.ckpt_path)

    def fit_checkpoint_choice(self, ckpt_path: Any) -> resume_selection.ResumeChoice | None:
        """The file fit continues from: this run's resume checkpoint or ``ckpt_path``'s file,
        the newest progress among the run's own files (``resume_selection``)."""
        run_dir = self.trainer.strategy.rank_info.run_dir
        resume = find_resume_checkpoint(run_dir) if run_dir else None
        last_dirs = resume_selection.recorded_checkpoint_dirs(resume) if resume is not None and ckpt_path == "last" else []
        requested = self.resolve_ckpt_path(ckpt_path, warn_if_no_last=resume is None, last_dirs=last_dirs)
        label = f'ckpt_path="{ckpt_path}"' if ckpt_path in ("last", "best") else "ckpt_path"
        return resume_selection.select_fit_checkpoint(run_dir, resume, requested, label, ckpt_path == "last")

    def _announce_restore(self, start: bool) -> None:
        """Rank 0 says which file it restores and why (``resume_selection``), before and after."""
        if start:
            message = resume_selection.restore_start_message(self.resume_choice, self.ckpt_path)
        else:
            trainer = self.trainer
            restarts = trainer.strategy.rank_info.restart_count
            fn = trainer.state.fn.value if trainer.state.fn is not None else None
            message = resume_selection.restore_end_message(self.resume_choice, self.ckpt_path, fn, restarts)
        if message is not None:
            rank_zero_info(message)

    def drop_resume_checkpoint(self) -> None:
        """After a completed fit: remove the run's resume checkpoint (rank 0), now that every
        checkpoint the run saved is durable (``finish_pending_saves`` ran before)."""
        if self.trainer.is_global_zero:
            remove_resume_checkpoints(self.trainer.strategy.rank_info.run_dir or self.trainer.default_root_dir)

    def resolve_ckpt_path(self, ckpt_path: Any, warn_if_no_last: bool = True, last_dirs: Any = ()) -> str | None:
        """A checkpoint file for ``ckpt_path``: a path, "best" or "last" (Lightning's meanings);
        ``last_dirs``: more folders to search for "last" (those the resumed run saved into)."""
        if ckpt_path == "best":
            return self._best_checkpoint()
        if ckpt_path == "last":
            return self._last_checkpoint(warn_if_no_last, last_dirs)
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

    def _last_checkpoint(self, warn_if_missing: bool, more_dirs: Any) -> str | None:
        """The newest last*.ckpt of any checkpoint callback (Lightning's _find_last_checkpoints)."""
        candidates = set()
        for dirpath in [getattr(cb, "dirpath", None) for cb in self.trainer.checkpoint_callbacks] + list(more_dirs):
            if dirpath and os.path.isdir(dirpath):
                recover_unfinished_saves(dirpath)  # a last.ckpt a killed run wrote but did not rename
                candidates |= {
                    os.path.join(dirpath, name)
                    for name in os.listdir(dirpath)
                    if name.startswith("last") and name.endswith(".ckpt")
                }
        candidates = {path for path in candidates if not self._is_dangling_link(path)}
        if not candidates:
            if not warn_if_missing:  # the run's resume checkpoint is loaded instead
                return None
            message = ('ckpt_path="last" is set, but there is no last checkpoint; nothing is loaded.\n'
                       "HINT: ModelCheckpoint(save_last=True).")  # fmt: skip
            if message not in self._warned:
                self._warned.add(message)
                warnings.warn(message, stacklevel=4)
            return None
        return max(candidates, key=os.path.getmtime)

    def _is_dangling_link(self, path: str) -> bool:
        """Whether ``path`` is a symlink to nothing (``save_last="link"`` killed mid-swap by an
        older fulmen, or its target deleted by hand): that is "no file", with a warning."""
        if not os.path.islink(path) or os.path.exists(path):
            return False
        message = (f"ckpt_path=\"last\": {path} is a link to {os.readlink(path)!r}, which does not exist; "
                   "it is skipped (no file).\nHINT: delete the link, or point it at a complete checkpoint.")  # fmt: skip
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, UserWarning, stacklevel=5)
        return True

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
        started = time.monotonic()
        checkpoint = dump_checkpoint(trainer, weights_only=weights_only)
        running = trainer.state.status == TrainerStatus.RUNNING
        if trainer.is_global_zero:
            if running:
                checkpoint_saver.save_in_background(checkpoint, filepath)
            else:
                save_atomic(checkpoint, filepath)
        trainer.strategy.barrier("save_checkpoint")
        if running:
            run_events.note(trainer.strategy.rank_info, "checkpoint", step=trainer.global_step, path=os.fspath(filepath),
                            held_s=round(time.monotonic() - started, 3), kind="background")

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
        self.rescue = self._start_rescue(handler)
        self.trainer.optimization.rescue = self.rescue
        return handler

    def _start_rescue(self, handler: PreemptionHandler) -> HangRescue | None:
        """The hang rescue of this rank (``hang_rescue``), where it can work: several ranks, each
        holding the whole state on the CPU, automatic optimization, and signal handlers of our own.

        Not on a GPU: there a rank does not wait in backward (the all-reduce is queued on the
        device), its optimizer step is queued behind the stuck collective, and copying the state
        to the host would wait behind it too, so neither a boundary nor a save can be had.
        """
        trainer, strategy = self.trainer, self.trainer.strategy
        module = trainer.lightning_module
        if not handler.installed or strategy.world_size < 2 or not strategy.replicated_state:
            return None
        if strategy.root_device.type != "cpu":
            return None
        if not module.automatic_optimization:
            return None
        info = strategy.rank_info
        run_dir = info.run_dir or trainer.default_root_dir
        if info.global_rank == 0:  # before this attempt's first collective: no peer can rescue yet
            remove_rescue_marks(run_dir)

        def save(loop_state: dict[str, Any]) -> Path:
            return save_resume_checkpoint(dump_checkpoint(trainer, loop_state=loop_state), run_dir)

        def rescued(path: Path, step: int) -> None:
            run_events.note(info, "checkpoint", everyone=True, step=step, path=str(path), kind="resume", rescue=True)
            run_events.note(info, "stopped", everyone=True, step=step, exit_code=PREEMPTED_EXIT_CODE,
                            reason="preempted while a rank was stuck (hang rescue)")  # fmt: skip
            environment_for(info).hand_off()  # the one rank that saved asks for the requeue

        def where() -> str:
            frame = main_thread_user_frame()
            return f"is stuck in {frame.describe()}" if frame is not None else "is busy outside the user's code"

        rescue = HangRescue(rank=info.global_rank, run_dir=run_dir,
                            tensors=[*module.parameters(), *module.buffers()], loop_state=trainer.fit_loop.state_dict,
                            save=save, signals=handler.signals, on_rescued=rescued, where=where)  # fmt: skip
        rescue.start()
        return rescue

    def remove_preemption(self) -> None:
        """Put back the signal handlers that were there before the fit."""
        if self.rescue is not None:
            self.rescue.stop()
        self.rescue = None
        self.trainer.optimization.rescue = None
        if self.preemption is not None:
            self.preemption.restore()
        self.preemption = None

    def epoch_ended(self) -> None:
        """Schedulers and callbacks move at an epoch's end: the last boundary no longer describes the state."""
        if self.rescue is not None:
            self.rescue.invalidate()

    def check_preemption(self) -> None:
        """At a step boundary: if a stop signal arrived (agreed by all ranks), save and exit 75."""
        handler, rescue = self.preemption, self.rescue
        strategy = self.trainer.strategy
        if handler is None:
            return
        if rescue is None:
            stopping = handler.stop_requested(strategy)
        else:  # the stop collective is where a rank waits for a stuck peer at a boundary
            rescue.at_boundary()
            stopping = False
            try:
                stopping = handler.stop_requested(strategy)
            finally:
                rescue.past_boundary(stopping)
        if not stopping:
            return
        info, step, started = strategy.rank_info, self.trainer.global_step, time.monotonic()
        if handler.received_signal is not None:
            run_events.note(info, "signal", everyone=True, signal=handler.received_signal.name,
                            received_at=handler.received_at, rank=info.global_rank, step=step)
        checkpoint = dump_checkpoint(self.trainer, weights_only=False)
        run_dir = info.run_dir or self.trainer.default_root_dir
        saved = True
        if self.trainer.is_global_zero:
            path = self._save_resume_checkpoint(checkpoint, run_dir)
            saved = path is not None
            if path is not None:
                run_events.note(info, "checkpoint", step=step, path=str(path), kind="resume",
                                held_s=round(time.monotonic() - started, 3))
        # the broadcast is the barrier too: every rank learns whether the save worked
        if not strategy.broadcast(saved, src=0):
            run_events.note(info, "stopped", step=step, exit_code=PREEMPTION_SAVE_FAILED_EXIT_CODE,
                            reason="the resume checkpoint could not be saved")
            raise SystemExit(PREEMPTION_SAVE_FAILED_EXIT_CODE)
        reason = f"preempted ({handler.received_signal.name if handler.received_signal else 'a peer rank was signalled'})"
        run_events.note(info, "stopped", step=step, exit_code=PREEMPTED_EXIT_CODE, reason=reason)
        hand_off(strategy.rank_info)
        raise SystemExit(PREEMPTED_EXIT_CODE)

    @staticmethod
    def _save_resume_checkpoint(checkpoint: dict[str, Any], run_dir: Any) -> Path | None:
        """Save the resume checkpoint (rank 0): its path, or None after saying why it failed and
        which file a restart uses.

        Why not raise: the stop must still be agreed by every rank, and a failed preemption save
        is its own outcome (``PREEMPTION_SAVE_FAILED_EXIT_CODE``, no requeue), not a crash (1).
        The previous resume checkpoint is untouched (atomic save, the ``last`` pointer moves last).
        """
        try:
            return save_resume_checkpoint(checkpoint, run_dir)
        except Exception as err:  # noqa: BLE001 - any failure to save ends the same way
            previous = find_resume_checkpoint(run_dir)
            fallback = f"a restart resumes from {previous}" if previous else "a restart starts from the beginning"
            print(
                f"fulmen: error: stopping for a signal, but the resume checkpoint could not be saved "
                f"({type(err).__name__}: {err})\n{fallback}; exiting with {PREEMPTION_SAVE_FAILED_EXIT_CODE} "
                "(no requeue).",
                file=sys.stderr,
                flush=True,
            )
            return None
