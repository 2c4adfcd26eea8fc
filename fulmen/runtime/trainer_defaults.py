"""What a Trainer adds around the user's objects: default callbacks and loggers, determinism
switches, legacy hook names, and the results table that test()/validate() print."""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from fulmen.core.hooks import is_checkpoint_callback
from fulmen.errors import MisconfigurationException
from fulmen.runtime.stages import TrainerFn, TrainerStatus

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer

LEGACY_HOOKS = {
    "training_epoch_end": "on_train_epoch_end (collect outputs yourself)",
    "validation_epoch_end": "on_validation_epoch_end",
    "test_epoch_end": "on_test_epoch_end",
    "training_step_end": "training_step",
    "validation_step_end": "validation_step",
    "test_step_end": "test_step",
    "validation_end": "on_validation_epoch_end",
    "tng_dataloader": "train_dataloader",
}
WARNED_LEGACY_HOOKS: set[tuple[type, str]] = set()  # warn once per class and hook


def warn_legacy_hooks(model: Any) -> None:
    """One DeprecationWarning per class for each legacy hook it defines (they are still called)."""
    for name, new in LEGACY_HOOKS.items():
        if callable(getattr(model, name, None)) and (type(model), name) not in WARNED_LEGACY_HOOKS:
            WARNED_LEGACY_HOOKS.add((type(model), name))
            warnings.warn(
                f"{type(model).__name__}.{name} is a legacy hook from older Lightning; it is still called, "
                f"but use {new} instead.",
                DeprecationWarning,
                stacklevel=5,
            )


def merge_model_callbacks(callbacks: list[Any], from_model: Any) -> list[Any]:
    """Trainer callbacks plus ``configure_callbacks()``'s; the model's replace ones of the same type."""
    if not from_model:
        return callbacks
    from_model = list(from_model) if isinstance(from_model, Iterable) else [from_model]
    types = {type(c) for c in from_model}
    return checkpoints_last([c for c in callbacks if type(c) not in types] + from_model)


def apply_determinism(deterministic: bool | str | None, benchmark: bool | None) -> None:
    """Trainer(deterministic=..., benchmark=...): torch's global switches, as Lightning sets them."""
    if deterministic is not None and deterministic is not False:
        torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
        # deterministic cuBLAS matmuls need this workspace setting, or they raise on CUDA
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if benchmark is not None:
        torch.backends.cudnn.benchmark = benchmark
    elif deterministic:
        torch.backends.cudnn.benchmark = False


def build_callbacks(flags: dict[str, Any], extra: list[Any]) -> list[Any]:
    """The user's callbacks plus Lightning's defaults (checkpoint, progress bar, summary), checkpoints last."""
    given = flags["callbacks"]
    callbacks = list(given) if isinstance(given, Iterable) else ([given] if given is not None else [])
    callbacks += extra

    def has(names: tuple[str, ...]) -> bool:
        return any(any(k.__name__ in names for k in type(c).__mro__) for c in callbacks)

    for flag, names in (("enable_checkpointing", ("ModelCheckpoint", "Checkpoint")),
                        ("enable_progress_bar", ("ProgressBar", "TQDMProgressBar"))):  # fmt: skip
        if flags[flag] is False and has(names):
            raise MisconfigurationException(
                f"Trainer({flag}=False) contradicts the {names[0]} in callbacks=[...].\n"
                f"HINT: drop {flag}=False, or remove the {names[0]} callback."
            )
    if flags["enable_checkpointing"] is not False and not any(is_checkpoint_callback(c) for c in callbacks):
        default = optional_default("fulmen.callbacks.model_checkpoint", "ModelCheckpoint")
        if default is not None:
            callbacks.append(default())
    bars = [type(c).__name__ for c in callbacks if any(k.__name__ == "ProgressBar" for k in type(c).__mro__)]
    if len(bars) > 1:
        raise MisconfigurationException(
            "You added multiple progress bar callbacks to the Trainer, but currently only one progress bar is"
            f" supported; got {bars}.\nHINT: keep one of them in callbacks=[...] (it replaces the default bar)."
        )
    if flags["enable_progress_bar"] is not False and not has(("ProgressBar", "TQDMProgressBar")):
        default = optional_default("fulmen.callbacks.progress", "TQDMProgressBar")
        if default is not None:
            callbacks.append(default())
    if flags["enable_model_summary"] is not False and not has(("ModelSummary",)):
        default = optional_default("fulmen.callbacks.model_summary", "ModelSummary")
        if default is not None:
            callbacks.append(default())
    return checkpoints_last(callbacks)


def build_loggers(logger: Any, default_root_dir: str) -> list[Any]:
    """Loggers for ``Trainer(logger=...)``: TensorBoard by default (CSV without tensorboard), none for False."""
    if logger is False:
        return []
    if logger is None or logger is True:
        tb = optional_default("fulmen.loggers.tensorboard", "TensorBoardLogger")
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            tb = None
        cls = tb or optional_default("fulmen.loggers.csv_logs", "CSVLogger")
        return [cls(save_dir=default_root_dir)] if cls is not None else []
    return list(logger) if isinstance(logger, (list, tuple)) else [logger]


def build_run_loggers(logger: Any, fast_dev_run: int | bool, default_root_dir: str) -> list[Any]:
    """The Trainer's loggers; under ``fast_dev_run`` a logger that records nothing (Lightning),
    none for ``logger=False``."""
    if not fast_dev_run:
        return build_loggers(logger, default_root_dir)
    dummy = optional_default("fulmen.loggers.logger", "DummyLogger")
    return [dummy()] if dummy is not None and logger is not False else []


def optional_default(module: str, name: str) -> Any:
    """A default callback/logger class from another part of fulmen, or None (warned) when absent."""
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("fulmen"):
            warnings.warn(f"{module}.{name} is not available, so the Trainer runs without it.", stacklevel=3)
            return None
        raise


def checkpoints_last(callbacks: list[Any]) -> list[Any]:
    """Checkpoint callbacks run after the others so that they see everything logged (Lightning)."""
    return [c for c in callbacks if not is_checkpoint_callback(c)] + [c for c in callbacks if is_checkpoint_callback(c)]


def print_results(stage: str, results: Any) -> None:
    if not results:
        return
    for idx, metrics in enumerate(results):
        if not metrics:
            continue
        title = f"{stage.capitalize()} metric" + (f" (dataloader {idx})" if len(results) > 1 else "")
        width = max(len(title), *(len(k) for k in metrics)) + 2
        print("-" * (width + 24))
        print(f"{title:<{width}}DataLoader {idx}")
        print("-" * (width + 24))
        for key, value in metrics.items():
            print(f"{key:<{width}}{value:.6g}")
        print("-" * (width + 24))


def end_tuner_run(trainer: Trainer, fn: TrainerFn) -> None:
    """A ``Tuner`` search ended the run early: teardown hooks and loggers as for a finished run."""
    trainer.checkpoint_flow.finish_pending_saves()
    trainer.hook_caller.call_setup("teardown", fn.value, trainer.datamodule)
    trainer.state.end(TrainerStatus.FINISHED)
    for logger in trainer.loggers:
        logger.finalize("success")
