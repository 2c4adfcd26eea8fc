"""How ``self.log(name, metric)`` holds a ``torchmetrics.Metric`` (Lightning's ``_ResultMetric``
for a Metric value).

The metric accumulates itself; the entry only remembers where its values go. Its step value is
what the metric's ``forward()`` returned for the batch (``metric._forward_cache``; nothing when
the step only called ``update()``). Its epoch value is ``metric.compute()``, called once per
epoch: under DDP torchmetrics gathers the states of every rank inside ``compute()``, so the
value is already global and ``sync_dist`` is not applied a second time. The loops reset the
metric when the epoch's values are published (``ResultCollection.reset``).

``MetricEntry`` answers the same questions as ``results._Entry`` (step value and batch, forked
names, epoch value), so the collection reads both kinds alike; a plain float never comes here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor


class MetricEntry:
    """One logged name whose value is a ``torchmetrics.Metric``."""

    __slots__ = (
        "name", "base", "suffix", "dl_idx", "prog_bar", "logger", "on_step", "on_epoch", "enable_graph",
        "metric", "step_value", "step_batch", "computed", "updated",
    )  # fmt: skip

    def __init__(self, name: str, metric: Any, *, prog_bar: bool, logger: bool, on_step: bool, on_epoch: bool,
                 enable_graph: bool) -> None:  # fmt: skip
        self.name = name
        self.base, sep, idx = name.partition("/dataloader_idx_")
        self.suffix = sep + idx
        self.dl_idx: int | None = None
        self.prog_bar = prog_bar
        self.logger = logger
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.enable_graph = enable_graph
        self.metric = metric
        self.step_value: Tensor | None = None
        self.step_batch = -1
        self.computed: Tensor | None = None
        self.updated = False  # logged since the last reset: only then is there an epoch value

    @property
    def forked(self) -> bool:
        return self.on_step and self.on_epoch

    def forked_name(self, kind: str) -> str:
        """``name_step`` / ``name_epoch`` (before any ``/dataloader_idx_N``), or ``name`` when not forked."""
        return self.base + "_" + kind + self.suffix if self.on_step and self.on_epoch else self.name

    def record(self, metric: Any, batch_counter: int) -> None:
        """``self.log`` was called with ``metric`` during batch ``batch_counter``."""
        self.metric = metric
        self.updated = True
        self.computed = None  # the metric may have been updated since the last compute()
        if self.on_step:
            value = metric._forward_cache  # what forward() returned for this batch (torchmetrics)
            if value is not None:
                self.step_value = self._checked(value, "forward()")
                self.step_batch = batch_counter

    def epoch_value(self, reduce_fn: Callable[[Tensor, str], Tensor] | None = None) -> Tensor | None:
        """``metric.compute()``, computed once until the metric is logged again; ``reduce_fn`` is
        not used: the metric synchronises its own states across ranks."""
        if not self.updated:
            return None
        if self.computed is None:
            self.computed = self._checked(self.metric.compute(), "compute()")
        return self.computed

    def reset(self) -> None:
        """Reset the metric's states for the next epoch (Lightning resets every logged metric)."""
        self.metric.reset()
        self.updated = False
        self.computed = None
        self.step_value = None

    def _checked(self, value: Any, where: str) -> Tensor:
        if not isinstance(value, Tensor):
            raise ValueError(  # Lightning's type and wording
                f"The `.{where}` return of the metric logged as {self.name!r} must be a tensor. "
                f"Found {value!r:.200}\nHINT: log a metric that returns one number, or log the items of a "
                "dict-returning metric with self.log_dict(metric.compute()) at the epoch end."
            )
        return value if self.enable_graph else value.detach()
