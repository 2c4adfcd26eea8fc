"""How the Trainer shows its collaborators' state under Lightning's attribute names.

``Delegated("progress")`` as a class attribute named ``current_epoch`` makes
``trainer.current_epoch`` read (and, where Lightning allows it, write)
``trainer.progress.current_epoch``; the functions below are Lightning's computed attributes
(``log_dir``, ``checkpoint_callback``, ``training``, ...). The Trainer lists both in one flat
table, and every value lives in exactly one collaborator.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from fulmen.core.hooks import is_checkpoint_callback
from fulmen.runtime.fit_loop import estimated_stepping_batches as _estimated_stepping_batches
from fulmen.runtime.results import to_float_dict
from fulmen.runtime.stages import RunningStage, TrainerStatus
from fulmen.runtime.trainer_accelerator import accelerator_for

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


class Delegated:
    """A Trainer attribute that is an attribute of one of its collaborators."""

    def __init__(self, collaborator: str, name: str | None = None, *, writable: bool = True) -> None:
        self.collaborator = collaborator
        self.name = name or ""
        self.writable = writable

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.collaborator), self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        if not self.writable:
            raise AttributeError(f"trainer.{self.name} is read-only (it is {self.collaborator}.{self.name}).")
        setattr(getattr(obj, self.collaborator), self.name, value)


def has_class(obj: Any, names: tuple[str, ...]) -> bool:
    """Whether ``obj``'s class or a base is named one of ``names`` (no import of optional callbacks)."""
    return any(k.__name__ in names for k in type(obj).__mro__)


def progress_bar_metrics(trainer: Trainer) -> dict[str, float]:
    """Progress-bar values as floats (reading them is what syncs device values)."""
    return to_float_dict(trainer.metric_publisher.progress_bar_raw)


def default_root_dir(trainer: Trainer) -> str:
    return trainer._default_root_dir


def log_dir(trainer: Trainer) -> str | None:
    """The first logger's directory (``save_dir`` for loggers without one), else default_root_dir."""
    if not trainer.loggers:
        return trainer._default_root_dir
    first = trainer.loggers[0]
    path = getattr(first, "log_dir", None) or getattr(first, "save_dir", None)
    return os.fspath(path) if path is not None else None


def num_devices(trainer: Trainer) -> int:
    return max(trainer.strategy.world_size // max(trainer.strategy.num_nodes, 1), 1)


def accelerator(trainer: Trainer) -> Any:
    """CPUAccelerator / CUDAAccelerator / MPSAccelerator for this rank's device."""
    return accelerator_for(trainer.strategy.root_device)


def device_ids(trainer: Trainer) -> list[int]:
    device = trainer.strategy.root_device
    return [device.index or 0] if device.type == "cuda" else [0]


def checkpoint_callbacks(trainer: Trainer) -> list[Any]:
    return [cb for cb in trainer.callbacks if is_checkpoint_callback(cb)]


def checkpoint_callback(trainer: Trainer) -> Any:
    found = trainer.checkpoint_callbacks
    return found[0] if found else None


def early_stopping_callbacks(trainer: Trainer) -> list[Any]:
    return [cb for cb in trainer.callbacks if has_class(cb, ("EarlyStopping",))]


def early_stopping_callback(trainer: Trainer) -> Any:
    found = trainer.early_stopping_callbacks
    return found[0] if found else None


def progress_bar_callback(trainer: Trainer) -> Any:
    return next((cb for cb in trainer.callbacks if has_class(cb, ("ProgressBar", "TQDMProgressBar"))), None)


def interrupted(trainer: Trainer) -> bool:
    return trainer.state.status == TrainerStatus.INTERRUPTED


def training(trainer: Trainer) -> bool:
    return trainer.state.stage == RunningStage.TRAINING


def validating(trainer: Trainer) -> bool:
    return trainer.state.stage == RunningStage.VALIDATING


def testing(trainer: Trainer) -> bool:
    return trainer.state.stage == RunningStage.TESTING


def predicting(trainer: Trainer) -> bool:
    return trainer.state.stage == RunningStage.PREDICTING


def sanity_checking(trainer: Trainer) -> bool:
    return trainer.state.stage == RunningStage.SANITY_CHECKING


def enable_validation(trainer: Trainer) -> bool:
    return trainer.data_sources.val_possible()


def first_logger(trainer: Trainer) -> Any:
    return trainer.loggers[0] if trainer.loggers else None


def set_logger(trainer: Trainer, logger: Any) -> None:
    trainer.loggers = [] if logger is None else [logger]


def estimated_stepping_batches(trainer: Trainer) -> float:
    """Optimizer steps the whole fit will take (loads the train dataloader if needed)."""
    return _estimated_stepping_batches(trainer.settings, trainer.data_sources)


@contextlib.contextmanager
def init_module(trainer: Trainer, empty_init: bool | None = None) -> Iterator[None]:
    """``with trainer.init_module():`` create the model with parameters in the training dtype (64-true, bf16-true)."""
    dtype = {"64-true": torch.float64, "bf16-true": torch.bfloat16}.get(trainer.precision)
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
