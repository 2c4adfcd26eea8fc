"""Several optimizers under automatic optimization, as Lightning 1.x ran them.

Scripts written for Lightning 1.x return two or more optimizers from ``configure_optimizers``
and take ``training_step(batch, batch_idx, optimizer_idx)`` (a GAN's generator and
discriminator). Lightning 2 refuses that; fulmen runs it with 1.9.5's semantics and warns once
that Lightning 2 needs manual optimization. Per batch, each active optimizer in turn (all of
them, or one chosen by the dicts' ``frequency``): the other optimizers' parameters are toggled
off, ``training_step`` runs with its ``optimizer_idx``, then its own zero_grad / backward /
clipping / step (or only the backward while accumulating). ``optimizer_idx`` reaches the hooks
whose override accepts it (``optimizer_step``, ``optimizer_zero_grad``,
``on_before_optimizer_step``, ``configure_gradient_clipping``, ``toggle_optimizer``).

The fit loop picks this routine once at fit start (``MultiOptimizerStep.wanted``), so ordinary
single-optimizer training keeps its own path.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.runtime.optimization_step import OptimizationStep, loss_from_output

WARNED_CLASSES: set[type] = set()  # the Lightning-2 warning, once per module class


def positional_count(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` (bound) takes; a large number for ``*args``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 1 << 16
    return sum(1 for p in params if p.kind in kinds)


def takes_optimizer_idx(module: LightningModule) -> bool:
    """Whether ``training_step`` names a third argument (1.x's ``optimizer_idx``; ``*args`` does not count)."""
    try:
        params = inspect.signature(module.training_step).parameters.values()
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds) >= 3


def optimizer_frequencies(conf: Any, count: int) -> list[int]:
    """The ``frequency`` of each optimizer dict (1.x), or [] when none is given."""
    if not isinstance(conf, (list, tuple)) or not all(isinstance(item, Mapping) for item in conf):
        return []
    frequencies = [item["frequency"] for item in conf if item.get("frequency") is not None]
    if not frequencies:
        return []
    if len(frequencies) != count or not all(isinstance(f, int) and f >= 1 for f in frequencies):
        raise MisconfigurationException(
            f"configure_optimizers gave the frequencies {frequencies} for {count} optimizers; each optimizer "
            "dict needs a positive int 'frequency', or none of them has one.\n"
            "HINT: [{'optimizer': opt_g, 'frequency': 1}, {'optimizer': opt_d, 'frequency': 5}]"
        )
    return frequencies


def active_optimizers(count: int, frequencies: list[int], batch_idx: int) -> list[int]:
    """Indices of the optimizers that step on ``batch_idx`` (1.9.5's ``_get_active_optimizers``)."""
    if not frequencies:
        return list(range(count))
    place = batch_idx % sum(frequencies)
    for index, end in enumerate(_cumulative(frequencies)):
        if place < end:
            return [index]
    return [count - 1]


def _cumulative(values: list[int]) -> list[int]:
    total, out = 0, []
    for value in values:
        total += value
        out.append(total)
    return out


def hooks_taking_optimizer_idx(hooks: Any) -> set[Any]:
    """The overrides written with 1.x's ``optimizer_idx``: module hook names, callbacks' bound methods."""
    takes: set[Any] = set()
    for fn in hooks.callbacks("on_before_optimizer_step"):
        if positional_count(fn) >= 4:  # (trainer, pl_module, optimizer, optimizer_idx)
            takes.add(fn)
    for name, base in (("on_before_optimizer_step", 1), ("configure_gradient_clipping", 1)):
        hook = hooks.module(name)
        if hook is not None and _parameter_names(hook)[base:base + 1] in (["optimizer_idx"], ["opt_idx"]):
            takes.add(name)
    return takes


class PerOptimizerOutputs(list):  # type: ignore[type-arg]
    """``on_train_batch_end``'s ``outputs`` with several optimizers: the dict of each optimizer
    that ran on this batch, in index order (1.9.5 drops the ones that did not run)."""


def warn_lightning2(module: LightningModule, count: int) -> None:
    """Once per class: this is 1.x API, Lightning 2 wants manual optimization."""
    if type(module) in WARNED_CLASSES:
        return
    WARNED_CLASSES.add(type(module))
    warnings.warn(
        f"{type(module).__name__} returns {count} optimizers with automatic optimization and "
        "training_step(batch, batch_idx, optimizer_idx): Lightning 1.x API, run as 1.9.5 did. "
        "Lightning 2 needs manual optimization: set `self.automatic_optimization = False` and step each "
        "optimizer in training_step (`opt_g, opt_d = self.optimizers()`, `self.manual_backward(loss)`).",
        DeprecationWarning,
        stacklevel=4,
    )


class MultiOptimizerStep:
    """One training batch with every active optimizer, each with its own closure and step."""

    def __init__(self, optimization: OptimizationStep, frequencies: list[int]) -> None:
        self.optimization = optimization
        self.frequencies = frequencies
        module = optimization.hooks.lightning_module
        self._toggle_with_idx = positional_count(module.toggle_optimizer) >= 2
        self._step_params = _parameter_names(module.optimizer_step)
        self._zero_grad_with_idx = positional_count(module.optimizer_zero_grad) >= 4

    @staticmethod
    def wanted(optimization: OptimizationStep) -> bool:
        """Whether this fit needs the several-optimizer routine (decided once at fit start)."""
        module = optimization.hooks.lightning_module
        return module.automatic_optimization and len(optimization.optimizers) > 1

    def step(self, batch: Any, batch_idx: int, should_accumulate: bool, accumulate: int,
             silent_zero_grad: bool) -> tuple[PerOptimizerOutputs, Tensor | None]:  # fmt: skip
        """Run each active optimizer on this batch; (per-optimizer outputs, last loss)."""
        del silent_zero_grad  # the zeroing is always in 1.9.5's place here: after training_step
        optimization = self.optimization
        module = optimization.hooks.lightning_module
        count = len(optimization.optimizers)
        outputs = PerOptimizerOutputs()
        loss: Tensor | None = None
        for index in active_optimizers(count, self.frequencies, batch_idx):
            optimizer = optimization.optimizers[index]
            if self._toggle_with_idx:
                module.toggle_optimizer(optimizer, index)
            else:
                module.toggle_optimizer(optimizer)
            optimization.optimizer_idx = index
            try:
                output, loss = self._one_optimizer(batch, batch_idx, index, should_accumulate, accumulate)
            finally:
                optimization.optimizer_idx = None
                module.untoggle_optimizer(index if self._toggle_with_idx else optimizer)
            if loss is not None:
                extra = {k: v for k, v in output.items() if k != "loss"} if isinstance(output, dict) else {}
                outputs.append({"loss": (loss / accumulate if accumulate > 1 else loss).detach(), **extra})
        return outputs, loss

    def _training_step(self, batch: Any, batch_idx: int, index: int) -> Any:
        optimization = self.optimization
        if optimization.module_wrapper is not None:
            optimization.module_wrapper.step_name = "training_step"
            output = optimization.model(batch, batch_idx, index)
        else:
            output = optimization.hooks.lightning_module.training_step(batch, batch_idx, index)
        step_end = getattr(optimization.hooks.lightning_module, "training_step_end", None)
        return step_end(output) if step_end is not None else output

    def _zero_grad(self, optimizer: Any, batch_idx: int, index: int) -> None:
        hooks = self.optimization.hooks
        trainer, module = hooks.trainer, hooks.lightning_module
        for fn in hooks.callbacks("on_before_zero_grad"):
            fn(trainer, module, optimizer)
        hook = hooks.module("on_before_zero_grad")
        if hook is not None:
            hook(optimizer)
        epoch = self.optimization.progress.current_epoch
        if self._zero_grad_with_idx:
            module.optimizer_zero_grad(epoch, batch_idx, optimizer, index)
        else:
            module.optimizer_zero_grad(epoch, batch_idx, optimizer)

    def _one_optimizer(self, batch: Any, batch_idx: int, index: int, should_accumulate: bool,
                       accumulate: int) -> tuple[Any, Tensor | None]:  # fmt: skip
        optimization = self.optimization
        optimizer = optimization.optimizers[index]
        holder: list[Any] = [None, None, False]  # output, loss, closure ran

        def closure() -> Tensor | None:
            with optimization.precision_plugin.forward_context():
                output = self._training_step(batch, batch_idx, index)
            loss = loss_from_output(output, automatic=True)
            holder[0], holder[1], holder[2] = output, loss, True
            if batch_idx % accumulate == 0:
                self._zero_grad(optimizer, batch_idx, index)
            if loss is not None:
                optimization.backward(loss / accumulate if accumulate > 1 else loss, optimizer)
            return loss

        if should_accumulate:
            no_sync = getattr(optimization.model, "no_sync", None)
            with no_sync() if no_sync is not None else contextlib.nullcontext():
                closure()
            return holder[0], holder[1]
        self._optimizer_step(optimization.lightning_optimizers[index], batch_idx, index, closure)
        if not holder[2]:
            raise MisconfigurationException(
                "optimizer_step() returned without calling the optimizer closure, so training_step never ran.\n"
                "HINT: call optimizer.step(closure=optimizer_closure) in your optimizer_step override."
            )
        return holder[0], holder[1]

    def _optimizer_step(self, wrapped: Any, batch_idx: int, index: int, closure: Callable[[], Any]) -> None:
        hooks = self.optimization.hooks
        epoch = self.optimization.progress.current_epoch
        step_hook = hooks.module("optimizer_step")
        if step_hook is None:
            wrapped.step(closure=closure)
            return
        names = self._step_params
        if "optimizer_idx" not in names and "opt_idx" not in names and len(names) < 5:
            step_hook(epoch, batch_idx, wrapped, closure)  # the 2.x signature
            return
        kwargs = {key: False for key in ("on_tpu", "using_native_amp") if key in names}
        if "using_lbfgs" in names:
            kwargs["using_lbfgs"] = type(wrapped.optimizer).__name__ == "LBFGS"
        step_hook(epoch, batch_idx, wrapped, index, closure, **kwargs)


def _parameter_names(fn: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []
