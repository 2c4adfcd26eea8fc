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
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from fulmen.core.callback_list import CallbackList
from fulmen.core.hooks import is_checkpoint_callback
from fulmen.runtime.results import to_float_dict
from fulmen.runtime.stages import RunningStage, TrainerStatus
from fulmen.runtime.strategy import ParallelStrategy
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


def callbacks(trainer: Trainer) -> CallbackList:
    """The run's callbacks: a list whose changes (append in ``on_fit_start``, ...) the hooks follow."""
    return trainer.hook_caller.callback_list


def set_callbacks(trainer: Trainer, value: Iterable[Any]) -> None:
    """``trainer.callbacks = [...]``: the hooks called from now on are those of ``value``."""
    trainer.hook_caller.use_callbacks(value)


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


def evaluating(trainer: Trainer) -> bool:
    """Lightning: validation (sanity check included) or test is running."""
    return trainer.state.stage in (RunningStage.VALIDATING, RunningStage.TESTING, RunningStage.SANITY_CHECKING)


def is_last_batch(trainer: Trainer) -> bool:
    """The running training batch is its epoch's last (known from the loader's length; unsized: False)."""
    return trainer.progress.is_last_batch


def scaler(trainer: Trainer) -> Any:
    """The GradScaler of 16-mixed precision on CUDA, else None (Lightning: ``precision_plugin.scaler``)."""
    return getattr(trainer.precision_plugin, "scaler", None)


def distributed_sampler_kwargs(trainer: Trainer) -> dict[str, int] | None:
    """What the strategy gives a DistributedSampler (several processes), None on one device (Lightning)."""
    strategy = trainer.strategy
    if not isinstance(strategy, ParallelStrategy):
        return None
    return {"num_replicas": strategy.world_size, "rank": strategy.global_rank}


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
    return trainer.data_sources.estimated_stepping_batches()


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


def _delegated(collaborator: str, names: str, *, writable: bool = True) -> dict[str, Delegated]:
    return {name: Delegated(collaborator, name, writable=writable) for name in names.split()}


# Lightning's Trainer attributes, each the state of one collaborator or computed from them: one
# flat table, installed on the class by ``install_surface`` (so the Trainer stays composed, with
# no base class, and its module keeps the entry points only).
SURFACE: dict[str, Any] = {
    **_delegated(
        "settings",
        "fast_dev_run overfit_batches limit_train_batches limit_val_batches limit_test_batches "
        "limit_predict_batches max_epochs min_epochs max_steps min_steps max_time num_sanity_val_steps "
        "val_check_interval check_val_every_n_epoch log_every_n_steps accumulate_grad_batches "
        "reload_dataloaders_every_n_epochs use_distributed_sampler inference_mode",
    ),
    **_delegated("progress", "current_epoch global_step", writable=False),
    **_delegated("progress", "should_stop"),
    **_delegated("hook_caller", "lightning_module", writable=False),
    **_delegated("metric_publisher", "callback_metrics logged_metrics", writable=False),
    **_delegated("metric_publisher", "loggers"),
    **_delegated(
        "optimization", "optimizers lr_scheduler_configs gradient_clip_val gradient_clip_algorithm track_grad_norm"
    ),
    **_delegated("optimization", "model", writable=False),
    **_delegated("checkpoint_flow", "ckpt_path"),
    **_delegated("data_sources", "datamodule val_dataloaders test_dataloaders predict_dataloaders", writable=False),
    **_delegated(
        "data_sources",
        "train_dataloader num_training_batches num_val_batches num_test_batches num_predict_batches "
        "num_sanity_val_batches val_check_batch",
    ),
    **_delegated(
        "strategy", "global_rank local_rank node_rank world_size num_nodes is_global_zero", writable=False
    ),
    **{
        view.__name__: property(view)
        for view in (
            progress_bar_metrics, default_root_dir, log_dir, num_devices, accelerator, device_ids,
            checkpoint_callbacks, checkpoint_callback, early_stopping_callbacks, early_stopping_callback,
            progress_bar_callback, interrupted, training, validating, testing, predicting, evaluating,
            sanity_checking, enable_validation, estimated_stepping_batches, is_last_batch, scaler,
            distributed_sampler_kwargs,
        )  # fmt: skip
    },
    "logger": property(first_logger, set_logger),
    "callbacks": property(callbacks, set_callbacks),
    "init_module": init_module,
}


def install_surface(cls: type) -> None:
    """Put ``SURFACE`` on the Trainer class; a name the class defines itself is a mistake."""
    for name, attribute in SURFACE.items():
        if name in vars(cls):
            raise TypeError(f"{cls.__name__}.{name} is defined twice (in the class and in trainer_properties.SURFACE).")
        setattr(cls, name, attribute)
