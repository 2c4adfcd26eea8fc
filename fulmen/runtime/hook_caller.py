"""Calling user hooks: callbacks first, then the LightningModule, skipping what nobody overrides.

The ``HookCaller`` is the one place that knows which hook is running (``current_fx``):
``LightningModule.log`` reads it to refuse or restrict logging where Lightning does. It owns
``trainer.callbacks`` (a ``CallbackList``). Loops ask ``callbacks(name)`` / ``module(name)``
for the overridden hooks, so a hook nobody overrides costs nothing per step; those two are the
``CallbackList``'s and the run's ``HookTable``'s look-ups themselves (no wrapper call on the
per-step path). ``callbacks(name)`` is a view with None for the callbacks that keep the no-op,
kept true to the list while it changes (appends in ``on_fit_start``, removals mid-epoch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.core.callback_list import CallbackList, HookView
from fulmen.core.hooks import HookTable, is_monitoring_callback, is_overridden
from fulmen.core.module import LightningModule
from fulmen.loggers.utilities import start_experiments
from fulmen.runtime.results import check_logging_allowed

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.runtime.trainer import Trainer


class StepHooks:
    """The hooks of one training step, looked up once (when the module is attached and whenever
    ``trainer.callbacks`` is assigned) instead of by name on every step.

    The callbacks' entries are ``CallbackList`` views, which follow changes to the list (walk
    them with ``if fn is not None``); the module's are its bound methods, None where it keeps
    the base implementation.
    """

    def __init__(self, callbacks: CallbackList, module: Callable[[str], Callable[..., Any] | None]) -> None:
        self.train_batch_start = callbacks.hooks("on_train_batch_start")
        self.train_batch_end = callbacks.hooks("on_train_batch_end")
        self.before_zero_grad = callbacks.hooks("on_before_zero_grad")
        self.before_backward = callbacks.hooks("on_before_backward")
        self.after_backward = callbacks.hooks("on_after_backward")
        self.before_optimizer_step = callbacks.hooks("on_before_optimizer_step")
        self.module_train_batch_start = module("on_train_batch_start")
        self.module_train_batch_end = module("on_train_batch_end")
        self.module_before_zero_grad = module("on_before_zero_grad")
        self.module_optimizer_zero_grad = module("optimizer_zero_grad")
        self.module_before_backward = module("on_before_backward")
        self.module_backward = module("backward")
        self.module_after_backward = module("on_after_backward")
        self.module_before_optimizer_step = module("on_before_optimizer_step")
        self.module_configure_gradient_clipping = module("configure_gradient_clipping")
        self.module_optimizer_step = module("optimizer_step")


class HookCaller:
    """Calls the hooks of one run's module and callbacks; callbacks receive ``trainer``."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer  # what callback hooks receive as their first argument
        self.lightning_module: LightningModule | None = None
        self.current_fx: str | None = None  # the start/end/epoch hook running now (None: a step hook)
        # the module's bound ``name`` hook when overridden, else None (no run yet: nothing overridden)
        self.module: Callable[[str], Callable[..., Any] | None] = HookTable(None, LightningModule).module
        self.use_callbacks(CallbackList())

    @property
    def callback_list(self) -> CallbackList:
        """``trainer.callbacks``."""
        return self._callback_list

    def use_callbacks(self, callbacks: Iterable[Callback]) -> None:
        """Make ``callbacks`` the run's callbacks (``trainer.callbacks = [...]``): a CallbackList is
        used as it is, any other iterable is copied into a new one."""
        found = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
        self._callback_list = found
        # each callback's bound ``name`` hook or None (see CallbackList.hooks); call it with trainer, module, ...
        self.callbacks: Callable[[str], HookView] = found.hooks
        self.step_hooks = StepHooks(found, self.module)  # read it at each use: an assignment replaces it

    def attach(self, module: LightningModule, callbacks: Iterable[Callback] | None = None) -> None:
        """Decide once per run which module hooks are overridden (and take ``callbacks`` when given)."""
        self.lightning_module = module
        self.module = HookTable(module, LightningModule).module
        self.use_callbacks(callbacks if callbacks is not None else self._callback_list)

    def any(self, name: str) -> bool:
        """Whether a callback or the module (may) override ``name``."""
        return bool(self.callbacks(name)) or self.module(name) is not None

    def monitoring_split(self, name: str) -> tuple[list[Callable[..., Any]], list[Callable[..., Any]]]:
        """(others, checkpoint/early-stopping ones) of the callbacks overriding ``name``: Lightning runs
        the second group last, each group a snapshot of the list taken now."""
        plain, monitoring = [], []
        for cb in self._callback_list:
            if is_overridden(cb, name, Callback):
                (monitoring if is_monitoring_callback(cb) else plain).append(getattr(cb, name))
        return plain, monitoring

    @contextlib.contextmanager
    def running(self, name: str) -> Iterator[None]:
        """Mark ``name`` as the running hook (for ``self.log``'s rules) inside the block."""
        previous, self.current_fx = self.current_fx, name
        try:
            yield
        finally:
            self.current_fx = previous

    def check_logging_allowed(self, name: str, on_step: bool | None, on_epoch: bool | None) -> None:
        """Refuse ``self.log(name, ...)`` where Lightning refuses it in the running hook.

        ``LightningModule.log`` calls this through its trainer, so the module never imports the
        runtime's logging rules itself.
        """
        check_logging_allowed(self.current_fx, name, on_step, on_epoch)

    def call(self, name: str, *args: Any) -> None:
        """Callbacks' ``name`` (in order), then the module's; used for start/end and epoch hooks."""
        with self.running(name):
            for fn in self.callbacks(name):
                if fn is not None:
                    fn(self.trainer, self.lightning_module, *args)
            hook = self.module(name)
            if hook is not None:
                hook(*args)

    def call_module(self, name: str, *args: Any) -> Any:
        """The module's hook even when it is the base implementation (hooks with a default job)."""
        with self.running(name):
            return getattr(self.lightning_module, name)(*args)

    def call_setup(self, name: str, stage: str, datamodule: LightningDataModule | None) -> None:
        """``setup`` or ``teardown``: datamodule, callbacks, then module (Lightning's order).

        Before ``setup``, the loggers' experiments are started (Lightning's ``_call_setup_hook``), so
        that ModelCheckpoint's default folder sees a W&B run id or an MLflow run id.
        """
        if name == "setup":
            start_experiments(getattr(self.trainer, "loggers", None) or [])
        with self.running(name):
            if datamodule is not None:
                getattr(datamodule, name)(stage=stage)
            for fn in self.callbacks(name):
                if fn is not None:
                    fn(self.trainer, self.lightning_module, stage=stage)
            hook = self.module(name)
            if hook is not None:
                hook(stage=stage)
