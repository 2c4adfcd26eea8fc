"""Compatibility scenarios about self.log: its options and Lightning's reductions (what lands in
callback_metrics, logged_metrics and progress_bar_metrics), where it may be called, and what
it stores for values of each type.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import metrics, plain


def _logging_module(pl: ModuleType) -> type:
    """Logs crafted values (batch index and epoch, not losses) with every option combination,
    so the observed numbers pin the reduction rules rather than floating-point training."""

    class Logging(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            v = float(batch_idx + 1 + 10 * self.current_epoch)
            self.log("t_default", v)
            self.log("t_step", v, on_step=True, on_epoch=False)
            self.log("t_epoch", v, on_step=False, on_epoch=True)
            self.log("t_both", v, on_step=True, on_epoch=True, prog_bar=True)
            self.log("t_weighted", v, on_step=False, on_epoch=True, batch_size=batch_idx + 1)
            self.log("t_max", v, on_step=False, on_epoch=True, reduce_fx="max")
            self.log("t_sum", v, on_step=False, on_epoch=True, reduce_fx="sum")
            self.log("t_pbar_only", v, prog_bar=True, logger=False)
            self.log_dict({"d_a": v, "d_b": 2 * v}, on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            v = float(batch_idx + 1 + 10 * self.current_epoch)
            self.log("v_default", v)
            self.log("v_both", v, on_step=True, on_epoch=True)
            self.log("v_weighted", v, batch_size=batch_idx + 1)
            self.log("v_min", v, reduce_fx="min", prog_bar=True)

        def on_train_epoch_start(self) -> None:
            self.log("e_train_start", float(300 + self.current_epoch))  # default: on_epoch only

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.log("b_end", float(batch_idx + 1 + 10 * self.current_epoch))  # default: on_step only

        def on_train_epoch_end(self) -> None:
            self.log("e_train_end", float(100 + self.current_epoch))

        def on_validation_epoch_end(self) -> None:
            self.log("e_val_end", float(200 + self.current_epoch), prog_bar=True)

    return Logging


def _metric_dicts(trainer: Any) -> dict[str, Any]:
    """The trainer's three metric dicts, as plain data."""
    return {
        "callback_metrics": metrics(trainer.callback_metrics),
        "logged_metrics": metrics(trainer.logged_metrics),
        "progress_bar_metrics": metrics(trainer.progress_bar_metrics),
    }


def logging(pl: ModuleType, root: Path) -> dict[str, Any]:
    """self.log / log_dict options -> callback_metrics, logged_metrics, progress_bar_metrics:
    seen by a callback's on_train_epoch_end of epoch 0, after epoch 0 (seen from epoch 1's start)
    and after fit (2 epochs x 3 batches, 2 val batches)."""
    snapshots: dict[str, Any] = {}

    class Snapshot(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 1:
                snapshots["after_epoch_0"] = _metric_dicts(trainer)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # what a callback (EarlyStopping, ModelCheckpoint, a user's) sees at epoch end
            if trainer.current_epoch == 0:
                snapshots["in_callback_on_train_epoch_end_0"] = _metric_dicts(trainer)

    trainer = pl.Trainer(**trainer_kwargs(str(root), callbacks=[Snapshot()], log_every_n_steps=1))
    trainer.fit(_logging_module(pl)(), loader(6), loader(4, seed=1))
    snapshots["after_fit"] = _metric_dicts(trainer)
    return snapshots


# hook -> extra self.log arguments; each hook logs "in_<hook>" once and records what happened
_LOGGING_HOOKS: dict[str, dict[str, Any]] = {
    "on_fit_start": {},
    "on_train_start": {},
    "on_train_epoch_start": {},
    "on_train_batch_start": {},
    "on_before_backward": {},
    "on_after_backward": {},
    "on_before_optimizer_step": {},
    "on_before_zero_grad": {},
    "on_train_batch_end": {},
    "on_validation_epoch_start": {},
    "on_validation_batch_end": {},
    "on_train_epoch_end": {},
    "on_train_end": {},
    "on_fit_end": {},
}
_EPOCH_END_ON_STEP = "on_train_epoch_end(on_step=True)"


def _outcome(call: Callable[[], None]) -> str:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the exception class is what is observed
        return type(error).__name__
    return "ok"


def _catchable(call: Callable[[], None]) -> list[str] | str:
    """"ok", or the built-in exception classes a user's ``except`` could name for the error
    (the library's own class cannot be shared between Lightning and fulmen scripts)."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - what the error can be caught as is observed
        skip = (BaseException, Exception, object)
        return sorted(c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins" and c not in skip)
    return "ok"


def log_in_hooks(pl: ModuleType, root: Path) -> dict[str, Any]:
    """self.log("in_<hook>", 1.0) from each hook (first call only): raised or accepted, and
    which of those keys reach callback_metrics; and pl_module.log from callback hooks (1 epoch x
    2 batches, 1 val batch)."""
    outcomes: dict[str, str] = {}

    def logging_hook(name: str) -> Callable[..., Any]:
        def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            if name not in outcomes:
                outcomes[name] = _outcome(lambda: self.log(f"in_{name}", 1.0, **_LOGGING_HOOKS[name]))
            if name == "on_train_epoch_end" and _EPOCH_END_ON_STEP not in outcomes:
                outcomes[_EPOCH_END_ON_STEP] = _outcome(lambda: self.log("bad", 1.0, on_step=True))
            return getattr(super(module_cls, self), name)(*args, **kwargs)

        return hook

    base = base_module(pl)
    module_cls = type("Logging", (base,), {name: logging_hook(name) for name in _LOGGING_HOOKS})

    class FromCallback(pl.Callback):
        """pl_module.log from callback hooks, the common pattern for metric callbacks."""

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            pl_module.log("cb_batch_end", float(batch_idx + 1))

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            pl_module.log("cb_train_epoch_end", 5.0)

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            pl_module.log("cb_val_epoch_end", 6.0, prog_bar=True)

    flags = trainer_kwargs(
        str(root), max_epochs=1, num_sanity_val_steps=0, callbacks=[FromCallback()], log_every_n_steps=1
    )
    trainer = pl.Trainer(**flags)
    trainer.fit(module_cls(), loader(4), loader(2, seed=1))
    return {
        "from_callback": {
            "callback_metrics": metrics({k: v for k, v in trainer.callback_metrics.items() if k.startswith("cb_")}),
            "logged_metrics": metrics({k: v for k, v in trainer.logged_metrics.items() if k.startswith("cb_")}),
            "progress_bar_metrics": metrics(
                {k: v for k, v in trainer.progress_bar_metrics.items() if k.startswith("cb_")}
            ),
        },
        "outcomes": dict(sorted(outcomes.items())),
        "callback_metrics_keys": sorted(key for key in trainer.callback_metrics if key.startswith("in_")),
    }


def log_value_types(pl: ModuleType, root: Path) -> dict[str, Any]:
    """What callback_metrics holds (value and dtype) for values of several Python / numpy /
    torch types logged in training_step, and which values self.log refuses (as what built-in
    exception the error can be caught)."""
    refused: dict[str, str] = {}
    accepted = {
        "int": lambda: 3,
        "bool": lambda: True,
        "float": lambda: 0.5,
        "numpy_float64": lambda: np.float64(0.25),
        "tensor_float64": lambda: torch.tensor(0.125, dtype=torch.float64),
        "tensor_int64": lambda: torch.tensor(7),
        "tensor_1_element": lambda: torch.tensor([2.0]),
        "tensor_requires_grad": lambda: torch.tensor(1.5, requires_grad=True) * 2,
    }
    rejected = {"tensor_2_elements": lambda: torch.tensor([1.0, 2.0]), "string": lambda: "text"}

    class Typed(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            for name, make in accepted.items():
                self.log(name, make())
            for name, make in rejected.items():
                refused.setdefault(name, _catchable(lambda: self.log(name, make())))
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, limit_val_batches=0))
    trainer.fit(Typed(), loader(4))
    stored = {name: trainer.callback_metrics[name] for name in accepted if name in trainer.callback_metrics}
    return {
        "values": {name: plain(value) for name, value in sorted(stored.items())},
        "dtypes": {name: str(getattr(value, "dtype", type(value).__name__)) for name, value in sorted(stored.items())},
        "requires_grad": {name: bool(getattr(value, "requires_grad", False)) for name, value in sorted(stored.items())},
        "refused": dict(sorted(refused.items())),
    }


def logged_metrics_between_log_steps(pl: ModuleType, root: Path) -> dict[str, Any]:
    """trainer.logged_metrics after fit with the default log_every_n_steps (50) for 3 and for 60
    training steps: step metrics from training_step, the module's and a callback's
    on_train_batch_end (no validation)."""

    class Logged(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("from_step", float(batch_idx + 1))
            return super().training_step(batch, batch_idx)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.log("from_module_batch_end", float(batch_idx + 1))

    class FromCallback(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            pl_module.log("from_callback_batch_end", float(batch_idx + 1))

    out = {}
    for steps in (3, 60):
        flags = trainer_kwargs(str(root), max_epochs=1, limit_val_batches=0, callbacks=[FromCallback()])
        trainer = pl.Trainer(**flags)
        trainer.fit(Logged(), loader(2 * steps))
        out[f"{steps}_steps"] = metrics(trainer.logged_metrics)
    return out


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "logged_metrics_between_log_steps": logged_metrics_between_log_steps,
    "logging": logging,
    "log_in_hooks": log_in_hooks,
    "log_value_types": log_value_types,
}
