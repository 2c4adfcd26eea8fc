"""Several optimizers and truncated BPTT under automatic optimization, as Lightning 1.x ran them.

Scripts written for Lightning 1.x return two or more optimizers from ``configure_optimizers``
and take ``training_step(batch, batch_idx, optimizer_idx)`` (a GAN's generator and
discriminator). Lightning 2 refuses that; fulmen runs it with 1.9.5's semantics and warns once
that Lightning 2 needs manual optimization. Per batch, each active optimizer in turn (all of
them, or one chosen by the dicts' ``frequency``): the other optimizers' parameters are toggled
off, ``training_step`` runs with its ``optimizer_idx``, then its own zero_grad / backward /
clipping / step (or only the backward while accumulating). ``optimizer_idx`` reaches the hooks
whose override accepts it (``optimizer_step``, ``optimizer_zero_grad``,
``on_before_optimizer_step``, ``configure_gradient_clipping``, ``toggle_optimizer``).

Truncated backprop through time (``truncated_bptt_steps > 0``, 1.x): each batch is cut by
``tbptt_split_batch`` (default: along dim 1), ``training_step(batch, batch_idx, [optimizer_idx,]
hiddens)`` runs once per split with the previous split's ``hiddens`` (detached; ``None`` at the
start of every batch), and every split takes its own optimizer step.

The fit loop picks this routine once at fit start (``LegacyAutomaticStep.wanted``), so ordinary
single-optimizer training keeps its own path.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.runtime.optimization_step import OptimizationStep, loss_from_output

WARNED_CLASSES: set[tuple[type, str]] = set()  # each Lightning-2 warning, once per module class


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


def keep_unused_parameters_for_1x(module: LightningModule, strategy: Any) -> None:
    """DDP with ``find_unused_parameters=True`` for a 1.x module stepping several optimizers.

    Why: each optimizer's turn switches the other optimizers' parameters off
    (``toggle_optimizer``), so a DDP step always has parameters without gradients, which DDP
    refuses unless it looks for them. 1.9.5's DDP looked for them by default (Lightning 2 turned
    that default off); called before the module is wrapped, so ``configure_optimizers`` need not run.
    """
    several_optimizers = takes_optimizer_idx(module) and not getattr(module, "truncated_bptt_steps", 0)  # else hiddens
    if module.automatic_optimization and several_optimizers and hasattr(strategy, "find_unused_parameters"):
        strategy.find_unused_parameters = True


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
        if fn is not None and positional_count(fn) >= 4:  # (trainer, pl_module, optimizer, optimizer_idx)
            takes.add(fn)
    for name, base in (("on_before_optimizer_step", 1), ("configure_gradient_clipping", 1)):
        hook = hooks.module(name)
        if hook is not None and _parameter_names(hook)[base:base + 1] in (["optimizer_idx"], ["opt_idx"]):
            takes.add(name)
    return takes


class LegacyOutputs:
    """``on_train_batch_end``'s ``outputs`` in 1.9.5's shape, ready: one dict per optimizer that
    ran, per tbptt split, with the single-element levels squeezed away (a list of two dicts for
    a GAN, a list per split for tbptt, a plain dict for one optimizer and one split)."""

    __slots__ = ("value",)

    def __init__(self, rows: list[list[dict[str, Any] | None]], several: bool) -> None:
        squeezed: Any = rows if several else [row[0] for row in rows]
        if len(squeezed) == 1:
            squeezed = squeezed[0]
        self.value = _drop_none(squeezed)


def _drop_none(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    return [_drop_none(item) for item in value if item is not None]


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside fulmen (the user's
    ``trainer.fit`` line), so Python's default filters show it as the script's own warning."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def warn_lightning2(module: LightningModule, count: int) -> None:
    """Once per class: several optimizers are 1.x API, Lightning 2 wants manual optimization."""
    _warn_once(
        module,
        "several",
        f"{type(module).__name__} returns {count} optimizers with automatic optimization and "
        "training_step(batch, batch_idx, optimizer_idx): Lightning 1.x API, run as 1.9.5 did. "
        "Lightning 2 needs manual optimization: set `self.automatic_optimization = False` and step each "
        "optimizer in training_step (`opt_g, opt_d = self.optimizers()`, `self.manual_backward(loss)`).",
    )


def warn_tbptt(module: LightningModule) -> None:
    """Once per class: truncated BPTT is 1.x API, Lightning 2 wants manual optimization."""
    _warn_once(
        module,
        "tbptt",
        f"{type(module).__name__} uses truncated_bptt_steps: Lightning 1.x API, run as 1.9.5 did. Lightning 2 "
        "needs manual optimization: set `self.automatic_optimization = False`, split the batch along time in "
        "training_step and call `self.manual_backward(loss)` / `opt.step()` per split, detaching the hidden state.",
    )


def _warn_once(module: LightningModule, what: str, message: str) -> None:
    if (type(module), what) in WARNED_CLASSES:
        return
    WARNED_CLASSES.add((type(module), what))
    warnings.warn(message, DeprecationWarning, stacklevel=_user_stacklevel())


def _hiddens_of(output: Any, tbptt: bool) -> Any:
    """The detached ``hiddens`` of a training_step output (1.9.5's ``_extract_hiddens``)."""
    has = isinstance(output, dict) and "hiddens" in output
    if not tbptt:
        if has:
            raise MisconfigurationException(
                "training_step returned 'hiddens', but truncated_bptt_steps is 0.\n"
                "HINT: set `self.truncated_bptt_steps = N` in __init__, or drop 'hiddens' from the returned dict."
            )
        return None
    if not has:
        raise MisconfigurationException(
            f"truncated_bptt_steps is on, but training_step returned {type(output).__name__} without 'hiddens'.\n"
            "HINT: return {'loss': loss, 'hiddens': hiddens} (the state the next split starts from)."
        )
    return _detach(output["hiddens"])


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def take_trainer_flag(legacy_flags: dict[str, Any]) -> int:
    """Remove 1.x's ``Trainer(truncated_bptt_steps=N)`` from ``legacy_flags`` (warning), returning N (0: unset).

    It is the default for modules that leave their own ``truncated_bptt_steps`` at 0, as in 1.x.
    """
    if "truncated_bptt_steps" not in legacy_flags:
        return 0
    warnings.warn(
        "Trainer(truncated_bptt_steps=...) is a legacy flag from older Lightning versions; use the module "
        "attribute `self.truncated_bptt_steps = N` (set in __init__) instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    return legacy_flags.pop("truncated_bptt_steps") or 0


def tbptt_steps(module: LightningModule, trainer_default: int = 0) -> int:
    """The module's ``truncated_bptt_steps``, else the legacy Trainer flag's (0: off), checked."""
    steps = getattr(module, "truncated_bptt_steps", 0) or trainer_default or 0
    if not isinstance(steps, int) or steps < 0:
        raise MisconfigurationException(
            f"truncated_bptt_steps={steps!r}: expected an int >= 0 (0 turns truncated backprop through time off)."
        )
    return steps


class LegacyAutomaticStep:
    """One training batch the 1.x way: each tbptt split (or the whole batch), and in it each
    active optimizer with its own closure and step; hiddens carried between splits."""

    def __init__(self, optimization: OptimizationStep, frequencies: list[int]) -> None:
        self.optimization = optimization
        self.frequencies = frequencies
        module = optimization.hooks.lightning_module
        self.several = len(optimization.optimizers) > 1
        self.tbptt = tbptt_steps(module, getattr(optimization.hooks.trainer, "truncated_bptt_steps", 0))
        self._toggle_with_idx = positional_count(module.toggle_optimizer) >= 2
        self._step_params = _parameter_names(module.optimizer_step)
        self._zero_grad_with_idx = positional_count(module.optimizer_zero_grad) >= 4
        self._hiddens: Any = None
        if self.tbptt:
            warn_tbptt(module)

    @staticmethod
    def wanted(optimization: OptimizationStep) -> bool:
        """Whether this fit needs the 1.x routine (decided once at fit start)."""
        module = optimization.hooks.lightning_module
        several = len(optimization.optimizers) > 1
        flag = getattr(optimization.hooks.trainer, "truncated_bptt_steps", 0)
        return module.automatic_optimization and (several or tbptt_steps(module, flag) > 0)

    def step(self, batch: Any, batch_idx: int, should_accumulate: bool, accumulate: int,
             silent_zero_grad: bool) -> tuple[LegacyOutputs, Tensor | None]:  # fmt: skip
        """Run the batch's splits and optimizers; (outputs for on_train_batch_end, last loss)."""
        del silent_zero_grad  # the zeroing is always in 1.9.5's place here: after training_step
        optimization = self.optimization
        module = optimization.hooks.lightning_module
        if self.frequencies:  # 1.9.5 steps the schedulers of the optimizer active on the batch's total index
            total = optimization.progress.total_batch_idx
            optimization.scheduler_optimizers = active_optimizers(len(optimization.optimizers), self.frequencies, total)
        splits = module.tbptt_split_batch(batch, self.tbptt) if self.tbptt else [batch]
        self._hiddens = None  # every batch starts from a fresh state (1.9.5)
        rows: list[list[dict[str, Any] | None]] = []
        loss: Tensor | None = None
        try:
            for split in splits:
                row, loss = self._split(split, batch_idx, should_accumulate, accumulate)
                rows.append(row)
        finally:
            self._hiddens = None
        return LegacyOutputs(rows, self.several), loss

    def _split(self, batch: Any, batch_idx: int, should_accumulate: bool,
               accumulate: int) -> tuple[list[dict[str, Any] | None], Tensor | None]:  # fmt: skip
        optimization = self.optimization
        module = optimization.hooks.lightning_module
        count = len(optimization.optimizers)
        row: list[dict[str, Any] | None] = [None] * max(count, 1)
        loss: Tensor | None = None
        for index in active_optimizers(count, self.frequencies, batch_idx):
            optimizer = optimization.optimizers[index]
            if self.several:
                module.toggle_optimizer(*((optimizer, index) if self._toggle_with_idx else (optimizer,)))
                optimization.optimizer_idx = index
            try:
                output, loss = self._one_optimizer(batch, batch_idx, index, should_accumulate, accumulate)
            finally:
                if self.several:
                    optimization.optimizer_idx = None
                    module.untoggle_optimizer(index if self._toggle_with_idx else optimizer)
            if loss is not None:
                skip = ("loss", "hiddens")
                extra = {k: v for k, v in output.items() if k not in skip} if isinstance(output, dict) else {}
                row[index] = {"loss": (loss / accumulate if accumulate > 1 else loss).detach(), **extra}
        return row, loss

    def _training_step(self, batch: Any, batch_idx: int, index: int) -> Any:
        optimization = self.optimization
        args: tuple[Any, ...] = (batch, batch_idx)
        if self.several:
            args += (index,)
        if self.tbptt:
            args += (self._hiddens,)
        if optimization.module_wrapper is not None:
            optimization.module_wrapper.step_name = "training_step"
            output = optimization.model(*args)
        else:
            output = optimization.hooks.lightning_module.training_step(*args)
        step_end = getattr(optimization.hooks.lightning_module, "training_step_end", None)
        output = step_end(output) if step_end is not None else output
        self._hiddens = _hiddens_of(output, self.tbptt > 0)
        return output

    def _zero_grad(self, optimizer: Any, batch_idx: int, index: int) -> None:
        hooks = self.optimization.hooks
        trainer, module = hooks.trainer, hooks.lightning_module
        for fn in hooks.callbacks("on_before_zero_grad"):
            if fn is not None:
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
