"""ModelCheckpoint: save the model periodically, keep the best ``k`` by a monitored metric.

File names, top-k bookkeeping, ``best_model_path``/``best_model_score``, ``last.ckpt`` and the
callback's checkpoint state follow PyTorch Lightning 2.x, so scripts and tools that look for
``epoch=E-step=S.ckpt`` or read ``callbacks["ModelCheckpoint{...}"]`` keep working.

Differences on purpose: every file (``last.ckpt`` included) is written atomically by
``trainer.save_checkpoint``, and ``save_last="link"`` swaps the link atomically too; an old
top-k file is deleted only after its replacement is in place.
"""

from __future__ import annotations

import os
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from fulmen.callbacks.checkpoint_paths import (
    default_checkpoint_dir,
    interpolate_filename,
    link_atomic,
    write_best_k_yaml,
)
from fulmen.callbacks.checkpoint_schedule import (
    agree,
    broadcast,
    saves_on_exception,
    skips_saving,
    validation_follows,
    validation_once_per_epoch_end,
)
from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException
from fulmen.loggers.logger import Logger
from fulmen.runtime.checkpoint_saver import after_pending_saves, exists_after_pending_saves, wait_for_pending_saves
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


class ModelCheckpoint(Callback):
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
    ) -> None:
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
        if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
            every_n_epochs, every_n_train_steps = 1, 0
        self._every_n_epochs: int = every_n_epochs or 0
        self._every_n_train_steps: int = every_n_train_steps or 0
        self._train_time_interval = train_time_interval
        self.kth_value: Tensor = torch.tensor(float("inf") if mode == "min" else float("-inf"))
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
        self._validate_configuration()

    def _validate_configuration(self) -> None:
        if self.save_top_k < -1:
            raise MisconfigurationException(f"Invalid value for save_top_k={self.save_top_k}. Must be >= -1")
        if self._every_n_train_steps < 0:
            raise MisconfigurationException(
                f"Invalid value for every_n_train_steps={self._every_n_train_steps}. Must be >= 0"
            )
        if self._every_n_epochs < 0:
            raise MisconfigurationException(f"Invalid value for every_n_epochs={self._every_n_epochs}. Must be >= 0")
        triggers = (self._every_n_train_steps >= 1) + (self._every_n_epochs >= 1) + (self._train_time_interval is not None)
        if triggers > 1:
            raise MisconfigurationException(
                f"Combination of parameters every_n_train_steps={self._every_n_train_steps}, "
                f"every_n_epochs={self._every_n_epochs} and train_time_interval={self._train_time_interval} "
                "should be mutually exclusive.\nHINT: use one ModelCheckpoint per schedule."
            )
        if self.monitor is None and self.save_top_k not in (-1, 0, 1):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={self.save_top_k}, monitor=None) is not a valid configuration. "
                "No quantity for top_k to track.\nHINT: set monitor='<a logged metric>' or save_top_k=-1."
            )

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
        self.dirpath = broadcast(trainer, self._resolve_dirpath(trainer))
        if getattr(trainer, "is_global_zero", True) and stage == "fit" and self.save_top_k != 0:
            if self.dirpath and os.path.isdir(self.dirpath) and os.listdir(self.dirpath):
                rank_zero_warn(f"Checkpoint directory {self.dirpath} exists and is not empty.")

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # a restored logger may have gone back to the run's version_N: follow it before the state
        # (which compares folders) is loaded
        if not self._dirpath_given:
            self.dirpath = broadcast(trainer, default_checkpoint_dir(trainer))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        skip_due_to_state = self._should_skip_saving_checkpoint(trainer)
        skip_batch = self._every_n_train_steps < 1 or trainer.global_step % self._every_n_train_steps != 0
        skip_time = True
        now = time.monotonic()
        if self._train_time_interval is not None:
            previous = self._last_time_checked
            skip_time = previous is None or (now - previous) < self._train_time_interval.total_seconds()
            skip_time = broadcast(trainer, skip_time)  # ranks' clocks differ: rank 0 decides
        if skip_batch and skip_time:
            return
        if not skip_time:
            self._last_time_checked = now
        candidates = self._monitor_candidates(trainer)
        # the monitored metric is missing (validation-only) or about to be refreshed by the
        # validation right after this last batch: save after validation instead (Lightning 2.6)
        if self.monitor is not None and (
            self.monitor not in candidates
            or (not self._should_save_on_train_epoch_end(trainer) and validation_follows(trainer))
        ):
            self._defer_save_until_validation = True
            return
        if skip_due_to_state:
            return
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
        if not (self.save_on_exception and saves_on_exception(trainer, self._last_global_step_saved)):
            return
        candidates = self._monitor_candidates(trainer)
        filepath = self.format_checkpoint_name(candidates)
        self._save_checkpoint(trainer, filepath)
        self._save_last_checkpoint(trainer, candidates)
        rank_zero_info(
            f"An {type(exception).__name__} was raised with message: {exception}, saved checkpoint to {filepath}"
        )

    def _save_epoch_checkpoints(self, trainer: Trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_topk_checkpoint(trainer, candidates)
        # last.ckpt follows a file saved at this very step (Lightning 2.6); a link may always move
        if self._last_global_step_saved == trainer.global_step or (
            self.save_last == "link" and self._last_checkpoint_saved
        ):
            self._save_last_checkpoint(trainer, candidates)

    # ---- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        dirpath_from_ckpt = state_dict.get("dirpath", self.dirpath)
        if self.dirpath == dirpath_from_ckpt:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
        else:
            warnings.warn(
                f"The dirpath has changed from {dirpath_from_ckpt!r} to {self.dirpath!r}, therefore "
                "`best_model_score`, `kth_best_model_path`, `kth_value`, `last_model_path` and `best_k_models` "
                "won't be reloaded. Only `best_model_path` will be reloaded.",
                stacklevel=2,
            )
        self.best_model_path = state_dict["best_model_path"]

    # ---- decisions ----------------------------------------------------------------------

    def _should_skip_saving_checkpoint(self, trainer: Any) -> bool:
        return skips_saving(trainer, self._last_global_step_saved)

    def _should_save_on_train_epoch_end(self, trainer: Any) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        return validation_once_per_epoch_end(trainer)

    def check_monitor_top_k(self, trainer: Any, current: Tensor | None = None) -> bool:
        """Whether ``current`` makes it into the top ``save_top_k`` (all ranks agree)."""
        if current is None:
            return False
        if self.save_top_k == -1:
            return True
        if len(self.best_k_models) < self.save_top_k:
            return True
        op = torch.lt if self.mode == "min" else torch.gt
        better = bool(op(current, self.best_k_models[self.kth_best_model_path]))
        return agree(trainer, better)

    def _monitor_candidates(self, trainer: Any) -> dict[str, Any]:
        candidates = dict(trainer.callback_metrics)
        # self.log("epoch", 3) arrives as a float tensor: names want integers
        epoch = candidates.get("epoch")
        candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        step = candidates.get("step")
        candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return candidates

    # ---- saving -------------------------------------------------------------------------

    def _save_topk_checkpoint(self, trainer: Any, candidates: dict[str, Any]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            self._save_none_monitor_checkpoint(trainer, candidates)
            return
        if self.monitor not in candidates:
            message = (
                f"`ModelCheckpoint(monitor={self.monitor!r})` could not find the monitored key in the returned "
                f"metrics: {sorted(k for k in candidates if k not in ('epoch', 'step'))}.\n"
                f"HINT: Did you call `log({self.monitor!r}, value)` in the `LightningModule`?"
            )
            if self._validation_ran:
                raise MisconfigurationException(message)
            rank_zero_warn(message)
        self._save_monitor_checkpoint(trainer, candidates)

    def _save_monitor_checkpoint(self, trainer: Any, candidates: dict[str, Any]) -> None:
        current = candidates.get(self.monitor)  # type: ignore[arg-type]
        if current is not None and not isinstance(current, Tensor):
            current = torch.tensor(float(current))
        if self.check_monitor_top_k(trainer, current):
            assert current is not None
            self._update_best_and_save(current, trainer, candidates)
        elif self.verbose:
            rank_zero_info(
                f"Epoch {int(candidates['epoch']):d}, global step {int(candidates['step']):d}: "
                f"{self.monitor!r} was not in top {self.save_top_k}"
            )

    def _save_none_monitor_checkpoint(self, trainer: Any, candidates: dict[str, Any]) -> None:
        filepath = self._get_metric_interpolated_filepath_name(candidates, trainer, self.best_model_path)
        # the path is part of this callback's state, so it is set before the file is written
        previous, self.best_model_path = self.best_model_path, filepath
        self._save_checkpoint(trainer, filepath)
        if self.save_top_k == 1 and previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _update_best_and_save(self, current: Tensor, trainer: Any, candidates: dict[str, Any]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        del_filepath = None
        if len(self.best_k_models) == k and k > 0:
            del_filepath = self.kth_best_model_path
            self.best_k_models.pop(del_filepath)
        if torch.isnan(current):  # a NaN never counts as best
            current = torch.tensor(float("inf" if self.mode == "min" else "-inf"), device=current.device)
        filepath = self._get_metric_interpolated_filepath_name(candidates, trainer, del_filepath)
        self.current_score = current
        self.best_k_models[filepath] = current
        if len(self.best_k_models) == k:
            worst = max if self.mode == "min" else min
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.__getitem__)
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        best = min if self.mode == "min" else max
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.__getitem__)
        self.best_model_score = self.best_k_models[self.best_model_path]
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

    def _save_last_checkpoint(self, trainer: Any, candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != self.last_model_path:
                filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST, ver=version)
                version += 1
        previous, self.last_model_path = self.last_model_path, filepath
        if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
            self._link_checkpoint(trainer, self._last_checkpoint_saved, filepath)
        else:
            self._save_checkpoint(trainer, filepath)
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if getattr(trainer, "is_global_zero", True):
            for logger in getattr(trainer, "loggers", ()):
                after_save = getattr(logger, "after_save_checkpoint", None)
                if after_save is None:
                    continue
                if getattr(type(logger), "after_save_checkpoint", None) is not Logger.after_save_checkpoint:
                    wait_for_pending_saves()  # a logger that looks at the files (uploads them) finds them
                after_save(self)

    @staticmethod
    def _link_checkpoint(trainer: Any, filepath: str, linkpath: str) -> None:
        if getattr(trainer, "is_global_zero", True):
            # behind the save of its target, like every file operation here
            after_pending_saves(
                lambda: link_atomic(filepath, linkpath), f"linking {linkpath!r} to {filepath!r}", linkpath, True
            )
        strategy = getattr(trainer, "strategy", None)
        if strategy is not None:
            strategy.barrier()

    def _should_remove_checkpoint(self, trainer: Any, previous: str, current: str) -> bool:
        """Never delete the file just written, one outside ``dirpath`` or the one resumed from."""
        if previous == current:
            return False
        previous_abs = Path(previous).absolute()
        resumed = getattr(trainer, "ckpt_path", None)
        if resumed is not None and previous_abs == Path(resumed).absolute():
            return False
        assert self.dirpath is not None
        return Path(self.dirpath).absolute() in previous_abs.parents

    def _remove_checkpoint(self, trainer: Any, filepath: str) -> None:
        if getattr(trainer, "is_global_zero", True):
            # only once the file that replaces it is in place (its save may still be finishing)
            after_pending_saves(lambda: _remove_if_present(filepath), f"deleting {filepath!r}", filepath, False)

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
        self, candidates: dict[str, Any], trainer: Any, del_filepath: str | None = None
    ) -> str:
        filepath = self.format_checkpoint_name(candidates)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != del_filepath:
                filepath = self.format_checkpoint_name(candidates, ver=version)
                version += 1
        return filepath

    def file_exists(self, filepath: str | os.PathLike[str], trainer: Any) -> bool:
        """Whether ``filepath`` exists, as rank 0 sees it (so ranks keep the same bookkeeping)."""
        return bool(broadcast(trainer, exists_after_pending_saves(filepath)))

    def _resolve_dirpath(self, trainer: Any) -> str:
        return self.dirpath if self.dirpath is not None else default_checkpoint_dir(trainer)

    def to_yaml(self, filepath: str | os.PathLike[str] | None = None) -> None:
        """Write ``best_k_models`` (path -> score) to ``best_k_models.yaml`` in ``dirpath``."""
        if filepath is None:
            assert self.dirpath is not None
            filepath = os.path.join(self.dirpath, "best_k_models.yaml")
        write_best_k_yaml(self.best_k_models, filepath)


def _remove_if_present(filepath: str) -> None:
    if os.path.lexists(filepath):
        os.remove(filepath)
