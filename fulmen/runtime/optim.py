"""Optimizers and schedulers: normalise ``configure_optimizers``, wrap optimizers, clip gradients.

``configure_optimizers`` may return any of Lightning's forms; ``parse_optimizers`` turns each
into (optimizers, scheduler configs) or raises an error that names the form it saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from fulmen.errors import MisconfigurationException, close_matches

_SCHEDULER_KEYS = ("scheduler", "name", "interval", "frequency", "reduce_on_plateau", "monitor", "strict")
_OPTIMIZER_DICT_KEYS = ("optimizer", "lr_scheduler", "frequency", "monitor")
_FORMS_HINT = (
    "HINT: return one of: an optimizer; a list of optimizers; ([optimizers], [schedulers]); "
    "{'optimizer': opt, 'lr_scheduler': sched or {'scheduler': sched, 'interval': 'step'|'epoch', ...}}; "
    "a list/tuple of such dicts."
)


@dataclass
class LRSchedulerConfig:
    """One scheduler and when to step it (Lightning's field names)."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _scheduler_config(item: Any, monitor: str | None) -> LRSchedulerConfig:
    if isinstance(item, Mapping):
        unknown = [k for k in item if k not in _SCHEDULER_KEYS]
        if unknown:
            raise MisconfigurationException(
                f"The lr scheduler dict has unknown key(s) {unknown}; expected keys among {list(_SCHEDULER_KEYS)}."
                + close_matches(str(unknown[0]), _SCHEDULER_KEYS)
            )
        if "scheduler" not in item:
            raise MisconfigurationException(
                f"The lr scheduler dict {dict(item)} has no 'scheduler' key.\n"
                "HINT: {'scheduler': torch.optim.lr_scheduler.StepLR(opt, 1), 'interval': 'epoch'}"
            )
        interval = item.get("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise MisconfigurationException(
                f"The lr scheduler dict has interval={interval!r}; expected 'step' or 'epoch'."
                + close_matches(str(interval), ("step", "epoch"))
            )
        frequency = item.get("frequency", 1)
        if not isinstance(frequency, int) or frequency < 1:
            raise MisconfigurationException(
                f"The lr scheduler dict has frequency={frequency!r}; expected a positive int."
            )
        sched = item["scheduler"]
        config = LRSchedulerConfig(
            scheduler=sched,
            name=item.get("name"),
            interval=interval,
            frequency=frequency,
            reduce_on_plateau=item.get("reduce_on_plateau", _is_plateau(sched)),
            monitor=item.get("monitor", monitor),
            strict=item.get("strict", True),
        )
    else:
        config = LRSchedulerConfig(scheduler=item, reduce_on_plateau=_is_plateau(item), monitor=monitor)
    if not hasattr(config.scheduler, "step") or not hasattr(config.scheduler, "optimizer"):
        raise MisconfigurationException(
            f"configure_optimizers returned {type(config.scheduler).__name__} as a scheduler, which has no "
            "step()/optimizer; expected a torch.optim.lr_scheduler object.\n" + _FORMS_HINT
        )
    if config.reduce_on_plateau and config.monitor is None:
        raise MisconfigurationException(
            "configure_optimizers returned a ReduceLROnPlateau scheduler without a metric to monitor.\n"
            "HINT: return {'optimizer': opt, 'lr_scheduler': {'scheduler': sched, 'monitor': 'val_loss'}}."
        )
    return config


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_optimizers(output: Any) -> tuple[list[Optimizer], list[LRSchedulerConfig]]:
    """(optimizers, scheduler configs) from whatever ``configure_optimizers`` returned."""
    optimizers: list[Any]
    schedulers: list[LRSchedulerConfig] = []
    if output is None:
        warnings.warn(
            "configure_optimizers returned None: training runs forward and backward but updates no weights.",
            stacklevel=3,
        )
        return [], []
    if isinstance(output, Optimizer):
        optimizers = [output]
    elif isinstance(output, Mapping):
        optimizers, schedulers = _parse_optimizer_dict(output)
    elif isinstance(output, (list, tuple)) and len(output) == 2 and isinstance(output[0], (list, tuple)):
        optimizers = list(output[0])
        schedulers = [_scheduler_config(s, None) for s in _as_list(output[1])]
    elif isinstance(output, (list, tuple)) and output and all(isinstance(o, Mapping) for o in output):
        optimizers = []
        for item in output:
            opts, scheds = _parse_optimizer_dict(item)
            optimizers += opts
            schedulers += scheds
    elif isinstance(output, (list, tuple)) and output and all(isinstance(o, Optimizer) for o in output):
        optimizers = list(output)
    else:
        raise MisconfigurationException(
            f"configure_optimizers returned {_describe(output)}, which is not a form the Trainer understands.\n"
            + _FORMS_HINT
        )
    bad = [o for o in optimizers if not isinstance(o, Optimizer)]
    if bad:
        raise MisconfigurationException(
            f"configure_optimizers returned {_describe(bad[0])} where an optimizer was expected.\n" + _FORMS_HINT
        )
    for config in schedulers:
        if not any(config.scheduler.optimizer is opt for opt in optimizers):
            raise MisconfigurationException(
                f"The scheduler {type(config.scheduler).__name__} steps an optimizer that configure_optimizers "
                "did not return.\nHINT: build the scheduler on one of the returned optimizers."
            )
    return optimizers, schedulers


def _parse_optimizer_dict(item: Mapping[str, Any]) -> tuple[list[Any], list[LRSchedulerConfig]]:
    unknown = [k for k in item if k not in _OPTIMIZER_DICT_KEYS]
    if unknown:
        raise MisconfigurationException(
            f"configure_optimizers returned a dict with unknown key(s) {unknown}; expected keys among "
            f"{list(_OPTIMIZER_DICT_KEYS)}." + close_matches(str(unknown[0]), _OPTIMIZER_DICT_KEYS)
        )
    if "optimizer" not in item:
        raise MisconfigurationException(
            f"configure_optimizers returned a dict without 'optimizer' (keys: {list(item)}).\n" + _FORMS_HINT
        )
    scheds = [_scheduler_config(s, item.get("monitor")) for s in _as_list(item.get("lr_scheduler"))]
    return [item["optimizer"]], scheds


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


class LightningOptimizer:
    """A view of a torch optimizer whose ``step`` goes through the Trainer's precision and hooks.

    Built by ``wrap_optimizer`` as a subclass of the real optimizer's class, so
    ``isinstance(opt, torch.optim.Adam)`` holds; every attribute (``param_groups``,
    ``state``...) is read from and written to the real optimizer, so the view never goes
    stale when a checkpoint is loaded into the optimizer.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_optimizer"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_optimizer"), name, value)

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._on_step(self._optimizer, closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._optimizer.load_state_dict(state_dict)

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    def __repr__(self) -> str:
        return f"LightningOptimizer({self._optimizer!r})"


def wrap_optimizer(
    optimizer: Optimizer, on_step: Callable[[Optimizer, Callable[[], Any] | None], Any]
) -> LightningOptimizer:
    """A LightningOptimizer for ``optimizer`` whose ``step`` calls ``on_step(optimizer, closure)``."""
    cls = type("Lightning" + type(optimizer).__name__, (LightningOptimizer, type(optimizer)), {})
    wrapped = cls.__new__(cls)
    object.__setattr__(wrapped, "_optimizer", optimizer)
    object.__setattr__(wrapped, "_on_step", on_step)
    return wrapped


def _params_with_grad(optimizer: Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def clip_gradients(
    precision_plugin: Any,
    optimizer: Optimizer,
    gradient_clip_val: float | None,
    gradient_clip_algorithm: str | None,
) -> None:
    """Clip by total norm ("norm", the default) or by value ("value"); a value of None or 0 does nothing."""
    if not gradient_clip_val:
        return
    algorithm = gradient_clip_algorithm or "norm"
    if algorithm not in ("norm", "value"):
        raise MisconfigurationException(
            f"gradient_clip_algorithm={algorithm!r} is not supported; expected 'norm' or 'value'."
            + close_matches(str(algorithm), ("norm", "value"))
        )
    params = _params_with_grad(getattr(optimizer, "_optimizer", optimizer))
    if not params:
        return
    if algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, clip_value=gradient_clip_val)
    else:
        torch.nn.utils.clip_grad_norm_(params, max_norm=gradient_clip_val)


def validate_multiple_optimizers(optimizers: Sequence[Optimizer], automatic: bool) -> None:
    """Automatic optimization with several optimizers is an error in Lightning 2.x; so it is here."""
    if automatic and len(optimizers) > 1:
        raise MisconfigurationException(
            f"configure_optimizers returned {len(optimizers)} optimizers, but automatic optimization "
            "steps exactly one.\nHINT: set `self.automatic_optimization = False` in __init__ and step them in "
            "training_step: `opt_a, opt_b = self.optimizers()`, `self.manual_backward(loss)`, `opt_a.step()`."
        )
