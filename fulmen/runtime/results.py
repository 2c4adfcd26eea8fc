"""self.log(): collect values, reduce them on device, and route them (Lightning's semantics).

One ``ResultCollection`` per stage ("train", "validate", "test"). Values stay on their device;
nothing is moved to the host until a metric is read (progress bar, logger interval, epoch end).

Naming: a value logged with both ``on_step`` and ``on_epoch`` is "forked": its step value is
``name_step``, its epoch value ``name_epoch``, and ``callback_metrics`` also holds the plain
``name`` (latest of the two). ``/dataloader_idx_N`` is appended when several eval loaders run.
Epoch means are weighted by ``batch_size`` (given, or the size of the current batch).
"""

from __future__ import annotations

import enum
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from fulmen.core.metrics import is_metric, is_metric_collection
from fulmen.errors import MisconfigurationException
from fulmen.runtime.metric_results import MetricEntry

_REDUCE_NAMES = {"mean": "mean", "avg": "mean", "sum": "sum", "max": "max", "min": "min"}
_REDUCE_CALLABLES: dict[Any, str] = {torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min"}

Metrics = dict[str, Tensor]


class EveryLoader(enum.Enum):
    """``epoch_metrics(loader=EVERY_LOADER)``: no filter by eval loader."""

    token = 0


EVERY_LOADER = EveryLoader.token


def extract_batch_size(batch: Any) -> int:
    """Size of the first dimension of the first tensor in ``batch`` (1 when there is none)."""
    if isinstance(batch, Tensor):
        return 1 if batch.ndim == 0 else int(batch.size(0))
    if isinstance(batch, str):
        return len(batch)
    if isinstance(batch, dict):
        for value in batch.values():
            return extract_batch_size(value)
    if isinstance(batch, (list, tuple)):
        for value in batch:
            return extract_batch_size(value)
    return 1


class _Entry:
    """What is known about one logged name in the current epoch."""

    __slots__ = (
        "name", "base", "suffix", "dl_idx", "prog_bar", "logger", "on_step", "on_epoch", "reduce", "fn", "sync_dist",
        "step_value", "step_batch", "total", "weight", "values", "count",
    )  # fmt: skip

    def __init__(self, name: str, prog_bar: bool, logger: bool, on_step: bool, on_epoch: bool,
                 reduce: str, fn: Callable[..., Any] | None, sync_dist: bool) -> None:  # fmt: skip
        self.name = name
        # "loss/dataloader_idx_1" forks into "loss_step/dataloader_idx_1" (Lightning puts the suffix last)
        self.base, sep, idx = name.partition("/dataloader_idx_")
        self.suffix = sep + idx
        self.dl_idx: int | None = None
        self.prog_bar = prog_bar
        self.logger = logger
        self.on_step = on_step
        self.on_epoch = on_epoch
        self.reduce = reduce
        self.fn = fn
        self.sync_dist = sync_dist
        self.step_value: Tensor | None = None
        self.step_batch = -1
        self.total: Tensor | None = None
        self.weight = 0
        self.values: list[Tensor] = []
        self.count = 0

    @property
    def forked(self) -> bool:
        return self.on_step and self.on_epoch

    def forked_name(self, kind: str) -> str:
        """``name_step`` / ``name_epoch`` (before any ``/dataloader_idx_N``), or ``name`` when not forked."""
        return self.base + "_" + kind + self.suffix if self.on_step and self.on_epoch else self.name

    def accumulate(self, value: Tensor, batch_size: int) -> None:
        self.count += 1
        if self.reduce == "mean":
            weighted = value * batch_size
            self.total = weighted if self.total is None else self.total + weighted
            self.weight += batch_size
        elif self.reduce == "sum":
            self.total = value if self.total is None else self.total + value
        elif self.reduce == "max":
            self.total = value if self.total is None else torch.maximum(self.total, value)
        elif self.reduce == "min":
            self.total = value if self.total is None else torch.minimum(self.total, value)
        else:
            self.values.append(value)

    def epoch_value(self, reduce_fn: Callable[[Tensor, str], Tensor]) -> Tensor | None:
        if self.count == 0:
            return None
        if self.reduce == "custom":
            assert self.fn is not None
            return self.fn(torch.stack(self.values))
        assert self.total is not None
        if self.reduce == "mean":
            if self.sync_dist:
                total = reduce_fn(self.total, "sum")
                weight = reduce_fn(torch.tensor(float(self.weight), device=self.total.device), "sum")
                return total / weight
            return self.total / self.weight
        return reduce_fn(self.total, self.reduce) if self.sync_dist else self.total


class ResultCollection:
    """Values logged during one stage, with the defaults of the hook that is running."""

    def __init__(self, stage: str, reduce_fn: Callable[[Tensor, str], Tensor]) -> None:
        self.stage = stage
        self.training = stage == "train"
        self._reduce_fn = reduce_fn
        self.entries: dict[str, _Entry | MetricEntry] = {}
        self.default_on_step = False
        self.default_on_epoch = True
        self.dataloader_idx: int | None = None
        self.batch: Any = None
        self.batch_counter = 0
        self.logged_this_batch = False
        self._batch_size: int | None = None

    # ---- called by the loops --------------------------------------------------------
    def set_defaults(self, on_step: bool, on_epoch: bool) -> None:
        """Defaults for on_step/on_epoch of the hook about to run (step hooks vs epoch hooks)."""
        self.default_on_step = on_step
        self.default_on_epoch = on_epoch

    def new_batch(self, batch: Any) -> None:
        self.batch = batch
        self.batch_counter += 1
        self.logged_this_batch = False
        self._batch_size = None

    def reset(self) -> None:
        """Forget the epoch's values; logged torchmetrics objects are reset too (Lightning)."""
        for entry in self.entries.values():
            if type(entry) is MetricEntry:
                entry.reset()
        self.entries.clear()

    # ---- called by LightningModule.log ---------------------------------------------
    def log(self, name: str, value: Any, *, prog_bar: bool, logger: bool, on_step: bool | None,
            on_epoch: bool | None, reduce_fx: Any, enable_graph: bool, sync_dist: bool,
            add_dataloader_idx: bool, batch_size: int | None, rank_zero_only: bool) -> None:  # fmt: skip
        tensor = self._to_tensor(name, value)  # None: a torchmetrics Metric, which accumulates itself
        on_step = self.default_on_step if on_step is None else on_step
        on_epoch = self.default_on_epoch if on_epoch is None else on_epoch
        if not on_step and not on_epoch:
            raise MisconfigurationException(
                f"self.log({name!r}, on_step=False, on_epoch=False) records nothing.\n"
                "HINT: set on_step=True, on_epoch=True, or both."
            )
        if add_dataloader_idx and self.dataloader_idx is not None:
            name = f"{name}/dataloader_idx_{self.dataloader_idx}"
        entry = self.entries.get(name)
        if tensor is None:
            self._log_metric(name, value, entry, prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph)
            return
        value = tensor if enable_graph else tensor.detach()
        if entry is None:
            reduce, fn = _parse_reduce_fx(name, reduce_fx)
            entry = _Entry(name, prog_bar, logger, on_step, on_epoch, reduce, fn, sync_dist)
            entry.dl_idx = self.dataloader_idx
            self.entries[name] = entry
        elif entry.dl_idx != self.dataloader_idx or type(entry) is not _Entry:
            self._check_same_loader(name, entry)
            raise _kind_changed(name, "a torchmetrics Metric", "a number")
        if on_step:
            entry.step_value = self._reduce_fn(value, "mean") if sync_dist else value
            entry.step_batch = self.batch_counter
            self.logged_this_batch = True
        if on_epoch:
            if batch_size is None and entry.reduce == "mean":
                if self._batch_size is None:
                    self._batch_size = extract_batch_size(self.batch) if self.batch is not None else 1
                batch_size = self._batch_size
            entry.accumulate(value, batch_size or 1)

    def _log_metric(self, name: str, metric: Any, entry: Any, prog_bar: bool, logger: bool, on_step: bool,
                    on_epoch: bool, reduce_fx: Any, enable_graph: bool) -> None:  # fmt: skip
        """A ``torchmetrics.Metric``: its batch value on_step, its ``compute()`` on_epoch
        (``fulmen.runtime.metric_results``); ``sync_dist`` and ``batch_size`` do not apply."""
        if entry is None:
            if _parse_reduce_fx(name, reduce_fx)[0] == "custom":
                raise MisconfigurationException(  # Lightning refuses it for a Metric too
                    f"self.log({name!r}, metric, reduce_fx={reduce_fx!r}): a metric reduces itself; "
                    "reduce_fx must be one of 'mean', 'sum', 'max', 'min' (it is not used).\n"
                    "HINT: drop reduce_fx, or write the reduction into a torchmetrics.Metric subclass."
                )
            entry = MetricEntry(name, metric, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                                enable_graph=enable_graph)  # fmt: skip
            entry.dl_idx = self.dataloader_idx
            self.entries[name] = entry
        else:
            self._check_same_loader(name, entry)
            if not isinstance(entry, MetricEntry):
                raise _kind_changed(name, "a number", "a torchmetrics Metric")
        entry.record(metric, self.batch_counter)
        if entry.step_batch == self.batch_counter:
            self.logged_this_batch = True

    def _check_same_loader(self, name: str, entry: Any) -> None:
        if entry.dl_idx != self.dataloader_idx:
            raise MisconfigurationException(
                f"self.log({name!r}, ..., add_dataloader_idx=False) was called from dataloader {entry.dl_idx} "
                f"and from dataloader {self.dataloader_idx}: their values would mix under one name.\n"
                "HINT: keep add_dataloader_idx=True, or log a different name per dataloader."
            )

    @staticmethod
    def _to_tensor(name: str, value: Any) -> Tensor | None:
        if isinstance(value, Tensor):
            if value.ndim == 0 and value.dtype in (torch.float32, torch.float64):
                return value  # the common case (a loss): nothing to convert
            if value.numel() != 1:
                raise ValueError(  # Lightning's type for a bad value
                    f"self.log({name!r}, value) got a tensor of shape {tuple(value.shape)}; expected a scalar.\n"
                    "HINT: reduce it first, e.g. self.log(name, value.mean())."
                )
            value = value.squeeze()
            if not value.is_floating_point():
                value = value.to(torch.get_default_dtype())
            elif value.dtype in (torch.float16, torch.bfloat16):
                value = value.float()
            return value
        if isinstance(value, numbers.Number) and not isinstance(value, complex):
            return torch.tensor(float(value))
        if is_metric(value):
            return None
        if is_metric_collection(value):
            raise ValueError(  # Lightning's type for a bad value
                f"self.log({name!r}, value) got a torchmetrics MetricCollection; self.log takes one metric.\n"
                f"HINT: self.log_dict({name}) logs each metric of the collection under its own name."
            )
        raise ValueError(  # Lightning's type for a bad value
            f"self.log({name!r}, value) got {type(value).__name__} {value!r:.60}; expected a number or a "
            "one-element tensor.\nHINT: log each scalar separately, or use self.log_dict({...})."
        )

    # ---- read by the Trainer ----------------------------------------------------------
    def step_metrics(self) -> tuple[Metrics, Metrics, Metrics]:
        """(callback, logger, progress-bar) values logged on_step during the current batch."""
        callback: Metrics = {}
        log: Metrics = {}
        pbar: Metrics = {}
        current = self.batch_counter
        for entry in self.entries.values():
            if entry.step_batch != current or entry.step_value is None:
                continue
            value = entry.step_value
            forked = entry.forked_name("step")
            if entry.logger:
                log[forked] = value
            if self.training:
                callback[entry.name] = value
                callback[forked] = value
            if entry.prog_bar:
                pbar[forked] = value
        return callback, log, pbar

    def epoch_metrics(self, loader: int | None | EveryLoader = EVERY_LOADER) -> tuple[Metrics, Metrics, Metrics]:
        """(callback, logger, progress-bar) epoch values of everything logged with on_epoch.

        ``loader`` keeps only the names logged while that eval loader ran (None: logged outside
        any loader's steps, e.g. in an epoch-end hook): Lightning publishes each loader's values
        when it ends, and an epoch-end hook sees only the others as they are logged.
        """
        callback: Metrics = {}
        log: Metrics = {}
        pbar: Metrics = {}
        every = loader is EVERY_LOADER
        for entry in self.entries.values():
            if not entry.on_epoch or not (every or entry.dl_idx == loader):
                continue
            value = entry.epoch_value(self._reduce_fn)
            if value is None:
                continue
            forked = entry.forked_name("epoch")
            callback[entry.name] = value
            callback[forked] = value
            if entry.logger:
                log[forked] = value
            if entry.prog_bar:
                pbar[forked] = value
        return callback, log, pbar


# hooks where self.log is refused, and hooks that may only log epoch-level values (Lightning's _FxValidator)
NO_LOGGING_HOOKS = frozenset({
    "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end", "on_train_end",
    "on_validation_end", "on_test_end", "on_predict_start", "on_predict_end", "on_predict_epoch_start",
    "on_predict_epoch_end", "on_predict_batch_start", "on_predict_batch_end", "on_exception", "setup", "teardown",
    "configure_optimizers", "configure_callbacks", "configure_model", "prepare_data", "lr_scheduler_step",
    "on_validation_model_eval", "on_validation_model_train", "on_test_model_eval", "on_test_model_train",
    "on_predict_model_eval", "on_validation_model_zero_grad", "train_dataloader", "val_dataloader",
    "test_dataloader", "predict_dataloader",
})  # fmt: skip
EPOCH_ONLY_HOOKS = frozenset({
    "on_train_start", "on_validation_start", "on_test_start", "on_train_epoch_start", "on_train_epoch_end",
    "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end",
    "training_epoch_end", "validation_epoch_end", "test_epoch_end", "validation_end",
})  # fmt: skip


def check_logging_allowed(hook: str | None, name: str, on_step: bool | None, on_epoch: bool | None) -> None:
    """Refuse self.log where Lightning refuses it; ``hook`` None means a step hook (anything goes)."""
    if hook is None:
        return
    if hook in NO_LOGGING_HOOKS:
        raise MisconfigurationException(
            f"self.log({name!r}) was called inside {hook}, where values cannot be logged.\n"
            "HINT: log from a step hook or an epoch hook (e.g. on_train_epoch_end)."
        )
    if hook in EPOCH_ONLY_HOOKS and (on_step is True or on_epoch is False):
        raise MisconfigurationException(
            f"self.log({name!r}, on_step={on_step}, on_epoch={on_epoch}) inside {hook}: this hook logs "
            "epoch-level values only.\nHINT: drop on_step/on_epoch (defaults: on_step=False, on_epoch=True)."
        )


def _kind_changed(name: str, before: str, now: str) -> MisconfigurationException:
    return MisconfigurationException(
        f"self.log({name!r}, value) was called with {before} and then with {now} in the same epoch.\n"
        "HINT: log numbers and metrics under different names."
    )


def _parse_reduce_fx(name: str, reduce_fx: Any) -> tuple[str, Callable[..., Any] | None]:
    if isinstance(reduce_fx, str):
        reduce = _REDUCE_NAMES.get(reduce_fx.lower())
        if reduce is None:
            raise MisconfigurationException(
                f"self.log({name!r}, reduce_fx={reduce_fx!r}) is not supported; expected one of "
                f"{sorted(set(_REDUCE_NAMES))} or a callable that reduces a 1-D tensor."
            )
        return reduce, None
    if reduce_fx in _REDUCE_CALLABLES:
        return _REDUCE_CALLABLES[reduce_fx], None
    if callable(reduce_fx):
        return "custom", reduce_fx
    raise MisconfigurationException(
        f"self.log({name!r}, reduce_fx={reduce_fx!r}): expected 'mean', 'sum', 'max', 'min' or a callable."
    )


def to_float_dict(metrics: dict[str, Any]) -> dict[str, Any]:
    """Host floats for loggers and the progress bar (this is where device values sync)."""
    return {k: (v.item() if isinstance(v, Tensor) else v if isinstance(v, int) else float(v)) for k, v in metrics.items()}
