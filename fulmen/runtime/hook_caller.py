"""Calling user hooks: callbacks first, then the LightningModule, skipping what nobody overrides.

The ``HookCaller`` is the one place that knows which hook is running (``current_fx``):
``LightningModule.log`` reads it to refuse or restrict logging where Lightning does. Loops ask
``callbacks(name)`` / ``module(name)`` for the overridden hooks, so a hook nobody overrides
costs nothing per step; those two are the run's ``HookTable`` lookups themselves, bound in
``attach`` (no wrapper call on the per-step path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.core.hooks import HookTable
from fulmen.core.module import LightningModule
from fulmen.loggers.utilities import start_experiments
from fulmen.runtime.results import check_logging_allowed

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.runtime.trainer import Trainer


class HookCaller:
    """Calls the hooks of one run's module and callbacks; callbacks receive ``trainer``."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer  # what callback hooks receive as their first argument
        self.lightning_module: LightningModule | None = None
        self.current_fx: str | None = None  # the start/end/epoch hook running now (None: a step hook)
        self._bind(HookTable(None, LightningModule, [], Callback))  # no run yet: nothing overridden

    def attach(self, module: LightningModule, callbacks: list[Callback]) -> None:
        """Decide once per run which hooks are overridden."""
        self.lightning_module = module
        self._bind(HookTable(module, LightningModule, callbacks, Callback))

    def _bind(self, table: HookTable) -> None:
        self._table = table
        # the callbacks' bound ``name`` hooks that are overridden (call them with trainer, module, ...)
        self.callbacks: Callable[[str], list[Callable[..., Any]]] = table.callbacks
        # the module's bound ``name`` hook when overridden, else None
        self.module: Callable[[str], Callable[..., Any] | None] = table.module
        # whether a callback or the module overrides ``name``
        self.any: Callable[[str], bool] = table.any
        # callback hooks split into (others, checkpoint/early-stopping ones), which Lightning runs last
        self.monitoring_split = table.monitoring_split

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
            for fn in self._table.callbacks(name):
                fn(self.trainer, self.lightning_module, *args)
            hook = self._table.module(name)
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
            for fn in self._table.callbacks(name):
                fn(self.trainer, self.lightning_module, stage=stage)
            hook = self._table.module(name)
            if hook is not None:
                hook(stage=stage)
