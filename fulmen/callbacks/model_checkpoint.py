"""ModelCheckpoint: save the model periodically, keep the best ``k`` by a monitored metric.

File names, top-k bookkeeping, ``best_model_path``/``best_model_score``, ``last.ckpt`` and the
callback's checkpoint state follow PyTorch Lightning 2.x, so scripts and tools that look for
``epoch=E-step=S.ckpt`` or read ``callbacks["ModelCheckpoint{...}"]`` keep working.

Differences on purpose: every file (``last.ckpt`` included) is written atomically by
``trainer.save_checkpoint``, and ``save_last="link"`` swaps the link atomically too; an old
top-k file is deleted only after its replacement is in place.

This module wires the hooks to the decisions; the rules live beside it: argument checks in
``checkpoint_arguments``, the metrics a save sees in ``checkpoint_monitor``, file names and the
default folder and ``-vN`` names in ``checkpoint_paths``, when to save in ``checkpoint_schedule``,
the top-k ranking and its checkpoint state in ``checkpoint_top_k``, and deleting (held behind a
moved ``last`` link), linking and checking files behind the background saves in ``checkpoint_files``.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor

import fulmen.callbacks.checkpoint_files as files
import fulmen.callbacks.checkpoint_paths as paths
import fulmen.callbacks.checkpoint_schedule as schedule
import fulmen.callbacks.checkpoint_top_k as topk
from fulmen.callbacks.checkpoint import Checkpoint
from fulmen.callbacks.checkpoint_arguments import default_triggers, legacy_arguments, validate_arguments
from fulmen.callbacks.checkpoint_monitor import check_monitor_logged, monitor_candidates, monitored_score
from fulmen.callbacks.checkpoint_paths import default_checkpoint_dir, interpolate_filename, write_best_k_yaml
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


class ModelCheckpoint(Checkpoint):
    """Save checkpoints during ``fit``; Lightning's arguments, defaults and file names.

    Args:
        dirpath: folder for the files; default ``<logger save_dir>/<name>/version_N/checkpoints``
            or ``<default_root_dir>/checkpoints`` without a logger.
        filename: template such as ``"{epoch}-{val_loss:.2f}"``; default ``"{epoch}-{step}"``.
        monitor: metric to rank checkpoints by; None keeps the most recent ones.
        save_last: also write ``last.ckpt`` whenever a checkpoint is saved, and at the end of
            training if none was (``"link"``: a symlink to the newest file).
        save_top_k: how many best files to keep; ``-1`` all, ``0`` none.
        save_on_exception: also save a checkpoint when fit raises.
        mode: ``"min"`` or ``"max"`` for ``monitor``.
        every_n_epochs / every_n_train_steps / train_time_interval: when to save (mutually
            exclusive; by default once per epoch).
        save_on_train_epoch_end: save at the end of the training epoch instead of after
            validation (default: decided like Lightning from the validation schedule).
        auto_insert_metric_name: ``{epoch}`` becomes ``epoch=3`` (False: ``3``).
        enable_version_counter: add ``-v1``, ``-v2`` ... when a name already exists.
        **legacy: Lightning 0.x/1.x's ``filepath``, ``save_best_only``, ``prefix``, ``period``
            (``checkpoint_arguments.legacy_arguments``), each with a warning naming the modern one.
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal["link"] | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
        **legacy: Any,
    ) -> None:
        if legacy:  # filepath, save_best_only, prefix, period (Lightning 0.x/1.x)
            dirpath, filename, save_top_k, every_n_epochs, last_name = legacy_arguments(
                legacy, dirpath, filename, save_top_k, every_n_epochs
            )
            if last_name:
                self.CHECKPOINT_NAME_LAST = last_name
        if mode not in ("min", "max"):
            raise MisconfigurationException(f"`mode` can be min, max but got {mode!r}.\nHINT: mode='min' or mode='max'.")
        if save_last not in (None, True, False, "link"):
            raise MisconfigurationException(f"save_last={save_last!r} is invalid; expected None, True, False or 'link'.")
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_on_exception = save_on_exception
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.auto_insert_metric_name = auto_insert_metric_name
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter
        self.dirpath: str | None = os.path.realpath(os.path.expanduser(dirpath)) if dirpath else None
        self._dirpath_given = bool(dirpath)
        self.filename = filename
        self._every_n_epochs, self._every_n_train_steps = default_triggers(
            every_n_train_steps, every_n_epochs, train_time_interval
        )
        self._train_time_interval = train_time_interval
        self.kth_value: Tensor = topk.worst_score(mode)
        self.current_score: Tensor | None = None
        self.best_k_models: dict[str, Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_score: Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""
        self._last_global_step_saved = 0  # nothing to save before the first optimizer step
        self._last_checkpoint_saved = ""
        self._last_time_checked: float | None = None
        self._validation_ran = False
        self._defer_save_until_validation = False
        self._held_removals = files.HeldRemovals()  # see _removals_after_last
        validate_arguments(save_top_k, monitor, self._every_n_train_steps, self._every_n_epochs, train_time_interval)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    # ---- hooks --------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.dirpath = schedule.broadcast(trainer, self._resolve_dirpath(trainer))
        if getattr(trainer, "is_global_zero", True) and stage == "fit" and self.save_top_k != 0:
            if self.dirpath and os.path.isdir(self.dirpath) and os.listdir(self.dirpath):
                rank_zero_warn(f"Checkpoint directory {self.dirpath} exists and is not empty.")

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # a restored logger may have gone back to the run's version_N: follow it before the state
        # (which compares folders) is loaded
        if not self._dirpath_given:
            self.dirpath = schedule.broadcast(trainer, default_checkpoint_dir(trainer))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        skip_due_to_state = self._should_skip_saving_checkpoint(trainer)
        step_due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        now = time.monotonic()
        time_due = schedule.interval_elapsed(trainer, self._train_time_interval, self._last_time_checked, now)
        if not (step_due or time_due):
            return
        if time_due:
            self._last_time_checked = now
        candidates = self._monitor_candidates(trainer)
        # the monitored metric is missing (validation-only) or about to be refreshed by the
        # validation right after this last batch: save after validation instead (Lightning 2.6)
        if self.monitor is not None and (
            self.monitor not in candidates
            or (not self._should_save_on_train_epoch_end(trainer) and schedule.validation_follows(trainer))
        ):
            self._defer_save_until_validation = True
            return
        if skip_due_to_state:
            return
        with self._removals_after_last(trainer):
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_epoch_checkpoints(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not getattr(trainer, "sanity_checking", False):
            self._validation_ran = True
        if self._should_skip_saving_checkpoint(trainer) or self._should_save_on_train_epoch_end(trainer):
            return
        if self._defer_save_until_validation:
            candidates = self._monitor_candidates(trainer)
            with self._removals_after_last(trainer):
                self._save_topk_checkpoint(trainer, candidates)
                self._save_last_checkpoint(trainer, candidates)
            self._defer_save_until_validation = False
            return
        self._save_epoch_checkpoints(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # save_last=True promises a last.ckpt even when no other file was ever written
        if self.save_last and not self._last_checkpoint_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not (self.save_on_exception and schedule.saves_on_exception(trainer, self._last_global_step_saved)):
            return
        candidates = self._monitor_candidates(trainer)
        filepath = self.format_checkpoint_name(candidates)
        with self._removals_after_last(trainer):
            self._save_checkpoint(trainer, filepath)
            self._save_last_checkpoint(trainer, candidates)
        rank_zero_info(
            f"An {type(exception).__name__} was raised with message: {exception}, saved checkpoint to {filepath}"
        )

    def _save_epoch_checkpoints(self, trainer: Trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        with self._removals_after_last(trainer):
            if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
                self._save_topk_checkpoint(trainer, candidates)
            # last.ckpt follows a file saved at this very step (Lightning 2.6); a link may always move
            if self._last_global_step_saved == trainer.global_step or (
                self.save_last == "link" and self._last_checkpoint_saved
            ):
                self._save_last_checkpoint(trainer, candidates)

    # ---- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Lightning's keys, so that a checkpoint written by either framework resumes in the other."""
        return topk.saved_state(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the bookkeeping unless ``dirpath`` changed (``checkpoint_top_k.restore_state``)."""
        topk.restore_state(self, state_dict)

    # ---- decisions ----------------------------------------------------------------------

    def _should_skip_saving_checkpoint(self, trainer: Trainer) -> bool:
        return schedule.skips_saving(trainer, self._last_global_step_saved)

    def _should_save_on_train_epoch_end(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        return schedule.validation_once_per_epoch_end(trainer)

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        """Whether ``current`` makes it into the top ``save_top_k`` (all ranks agree)."""
        if current is None:
            return False
        if topk.has_free_slot(self.best_k_models, self.save_top_k):
            return True
        return schedule.agree(trainer, topk.is_better(current, self.best_k_models[self.kth_best_model_path], self.mode))

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Any]:
        return monitor_candidates(trainer)

    # ---- saving -------------------------------------------------------------------------

    def _save_topk_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            self._save_none_monitor_checkpoint(trainer, candidates)
            return
        check_monitor_logged(self.monitor, candidates, self._validation_ran)
        self._save_monitor_checkpoint(trainer, candidates)

    def _save_monitor_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        current = monitored_score(candidates, self.monitor)  # type: ignore[arg-type]
        if self.check_monitor_top_k(trainer, current):
            assert current is not None
            self._update_best_and_save(current, trainer, candidates)
        elif self.verbose:
            rank_zero_info(
                f"Epoch {int(candidates['epoch']):d}, global step {int(candidates['step']):d}: "
                f"{self.monitor!r} was not in top {self.save_top_k}"
            )

    def _save_none_monitor_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        filepath = self._get_metric_interpolated_filepath_name(candidates, trainer, self.best_model_path)
        # the path is part of this callback's state, so it is set before the file is written
        previous, self.best_model_path = self.best_model_path, filepath
        self._save_checkpoint(trainer, filepath)
        if self.save_top_k == 1 and previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _update_best_and_save(self, current: Tensor, trainer: Trainer, candidates: dict[str, Any]) -> None:
        k = topk.slots(self.save_top_k, len(self.best_k_models))
        del_filepath = topk.make_room(self.best_k_models, self.kth_best_model_path, k)
        current = topk.without_nan(current, self.mode)
        filepath = self._get_metric_interpolated_filepath_name(candidates, trainer, del_filepath)
        topk.record(self, filepath, current, k)
        if self.verbose:
            rank_zero_info(
                f"Epoch {int(candidates['epoch']):d}, global step {int(candidates['step']):d}: {self.monitor!r} "
                f"reached {float(current):0.5f} (best {float(self.best_model_score):0.5f}), saving model to "
                f"{filepath!r} as top {k}"
            )
        self._save_checkpoint(trainer, filepath)
        # delete the dropped file only now that its replacement is complete on disk
        if del_filepath and self._should_remove_checkpoint(trainer, del_filepath, filepath):
            self._remove_checkpoint(trainer, del_filepath)

    def _save_last_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        filepath = self._free_filepath(candidates, trainer, self.last_model_path, self.CHECKPOINT_NAME_LAST)
        previous, self.last_model_path = self.last_model_path, filepath
        if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
            self._link_checkpoint(trainer, self._last_checkpoint_saved, filepath)
        else:
            self._save_checkpoint(trainer, filepath)
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        files.notify_loggers(trainer, self)  # waits for pending saves only for a logger that reads files

    # file operations run behind the background saves (checkpoint_files); they stay methods so
    # that a subclass overriding Lightning's private hooks still takes effect

    @staticmethod
    def _link_checkpoint(trainer: Trainer, filepath: str, linkpath: str) -> None:
        files.link_checkpoint(trainer, filepath, linkpath)

    def _should_remove_checkpoint(self, trainer: Trainer, previous: str, current: str) -> bool:
        """Never delete the file just written, one outside ``dirpath`` or the one resumed from."""
        return files.is_removable(previous, current, self.dirpath, getattr(trainer, "ckpt_path", None))

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        if not self._held_removals.hold(filepath):
            files.remove_checkpoint(trainer, filepath)

    def _removals_after_last(self, trainer: Trainer) -> contextlib.AbstractContextManager[None]:
        """Hold this save's deletions until its ``last`` link has moved (``checkpoint_files.HeldRemovals``)."""
        return self._held_removals.until_done(self.save_last == "link", lambda path: self._remove_checkpoint(trainer, path))

    # ---- names --------------------------------------------------------------------------

    def _format_checkpoint_name(
        self, filename: str | None, metrics: dict[str, Any], prefix: str = "", auto_insert_metric_name: bool = True
    ) -> str:
        return interpolate_filename(
            filename, metrics, prefix, auto_insert_metric_name, self.CHECKPOINT_JOIN_CHAR, self.CHECKPOINT_EQUALS_CHAR
        )

    def format_checkpoint_name(self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None) -> str:
        """The path for ``metrics`` (e.g. ``{"epoch": 2, "val_loss": 0.12}`` -> ``.../epoch=2-val_loss=0.12.ckpt``)."""
        name = self._format_checkpoint_name(
            filename or self.filename, dict(metrics), auto_insert_metric_name=self.auto_insert_metric_name
        )
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join((name, f"v{ver}"))
        name = f"{name}{self.FILE_EXTENSION}"
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def _get_metric_interpolated_filepath_name(
        self, candidates: dict[str, Any], trainer: Trainer, del_filepath: str | None = None
    ) -> str:
        return self._free_filepath(candidates, trainer, del_filepath)

    def _free_filepath(
        self, candidates: dict[str, Any], trainer: Trainer, replaced: str | None, filename: str | None = None
    ) -> str:
        """The name for ``candidates``, with ``-v1``, ``-v2``... while it clashes with an existing file."""
        return paths.free_filepath(
            lambda ver: self.format_checkpoint_name(candidates, filename, ver=ver),
            lambda path: self._enable_version_counter and self.file_exists(path, trainer),
            replaced,
            self.STARTING_VERSION,
        )

    def file_exists(self, filepath: str | os.PathLike[str], trainer: Trainer) -> bool:
        """Whether ``filepath`` exists, as rank 0 sees it (so ranks keep the same bookkeeping)."""
        return files.exists_on_rank_zero(trainer, filepath)

    def _resolve_dirpath(self, trainer: Trainer) -> str:
        return self.dirpath if self.dirpath is not None else default_checkpoint_dir(trainer)

    def to_yaml(self, filepath: str | os.PathLike[str] | None = None) -> None:
        """Write ``best_k_models`` (path -> score) to ``best_k_models.yaml`` in ``dirpath``."""
        if filepath is None:
            assert self.dirpath is not None
            filepath = os.path.join(self.dirpath, "best_k_models.yaml")
        write_best_k_yaml(self.best_k_models, filepath)
