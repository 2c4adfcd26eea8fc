"""Read-only views of a Trainer's state with Lightning's attribute names.

Kept apart from ``trainer.py`` so that the Trainer's flow stays readable; nothing here
changes state except the ``should_stop`` setter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fulmen.core.hooks import is_checkpoint_callback
from fulmen.runtime.results import to_float_dict


@dataclass
class TrainerState:
    """What the Trainer is doing: ``fn`` ("fit", "validate", "test", "predict") and its status."""

    status: str = "initializing"  # "initializing" | "running" | "finished" | "interrupted"
    fn: str | None = None
    stage: str | None = None  # "train" | "sanity_check" | "validate" | "test" | "predict"

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def stopped(self) -> bool:
        return self.status in ("finished", "interrupted")


def _has_class(obj: Any, names: tuple[str, ...]) -> bool:
    return any(k.__name__ in names for k in type(obj).__mro__)


class TrainerProperties:
    """Lightning's Trainer attributes, computed from the loops, strategy and callbacks."""

    # set by Trainer.__init__ / runs
    fit_loop: Any
    strategy: Any
    callbacks: list[Any]
    loggers: list[Any]
    _callback_metrics: dict[str, Tensor]
    _logged_metrics: dict[str, Any]
    _pbar_raw: dict[str, Any]
    _default_root_dir: str

    @property
    def current_epoch(self) -> int:
        return self.fit_loop.current_epoch

    @property
    def global_step(self) -> int:
        return self.fit_loop.global_step

    @property
    def callback_metrics(self) -> dict[str, Tensor]:
        return self._callback_metrics

    @property
    def logged_metrics(self) -> dict[str, Any]:
        return self._logged_metrics

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        """Progress-bar values as floats (reading them is what syncs device values)."""
        return to_float_dict(self._pbar_raw)

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def num_nodes(self) -> int:
        return self.strategy.num_nodes

    @property
    def num_devices(self) -> int:
        return max(self.strategy.world_size // max(self.strategy.num_nodes, 1), 1)

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def accelerator(self) -> Any:
        """CPUAccelerator / CUDAAccelerator / MPSAccelerator for this rank's device."""
        from fulmen.runtime.trainer_accelerator import accelerator_for

        return accelerator_for(self.strategy.root_device)

    @property
    def device_ids(self) -> list[int]:
        device = self.strategy.root_device
        return [device.index or 0] if device.type == "cuda" else [0]

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self.loggers = [] if logger is None else [logger]

    @property
    def default_root_dir(self) -> str:
        return self._default_root_dir

    @property
    def log_dir(self) -> str | None:
        """The first logger's directory (``save_dir`` for loggers without one), else default_root_dir."""
        if not self.loggers:
            return self._default_root_dir
        first = self.loggers[0]
        path = getattr(first, "log_dir", None) or getattr(first, "save_dir", None)
        return os.fspath(path) if path is not None else None

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        return [cb for cb in self.callbacks if is_checkpoint_callback(cb)]

    @property
    def checkpoint_callback(self) -> Any:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def early_stopping_callbacks(self) -> list[Any]:
        return [cb for cb in self.callbacks if _has_class(cb, ("EarlyStopping",))]

    @property
    def early_stopping_callback(self) -> Any:
        found = self.early_stopping_callbacks
        return found[0] if found else None

    @property
    def progress_bar_callback(self) -> Any:
        for cb in self.callbacks:
            if _has_class(cb, ("ProgressBar", "TQDMProgressBar")):
                return cb
        return None

    @property
    def interrupted(self) -> bool:
        return self.state.status == "interrupted"  # type: ignore[attr-defined]

    @property
    def training(self) -> bool:
        return self.state.stage == "train"  # type: ignore[attr-defined]

    @property
    def validating(self) -> bool:
        return self.state.stage == "validate"  # type: ignore[attr-defined]

    @property
    def testing(self) -> bool:
        return self.state.stage == "test"  # type: ignore[attr-defined]

    @property
    def predicting(self) -> bool:
        return self.state.stage == "predict"  # type: ignore[attr-defined]

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage == "sanity_check"  # type: ignore[attr-defined]

    @property
    def enable_validation(self) -> bool:
        return self._val_possible()  # type: ignore[attr-defined]
