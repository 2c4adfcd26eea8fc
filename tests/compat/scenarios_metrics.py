"""Compatibility scenarios about logging torchmetrics objects: ``self.log(name, metric)`` and
``self.log_dict(MetricCollection)`` (what lands in the metric dicts and the loggers, when the
metrics compute and reset), the errors Lightning raises for them, and metric states in
checkpoints and on resume.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning. torchmetrics is imported inside each scenario: it is an optional
extra of fulmen (``fulmen[metrics]``, part of ``dev``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import metrics, plain


def _counting(base: type, counts: dict[str, int], label: str) -> Any:
    """An instance of the torchmetrics class ``base`` that counts its real compute() calls under
    ``label`` (torchmetrics caches compute(), and its forward() computes the batch value once).
    Resets are seen through ``update_count`` (0 after a reset): how often an idempotent reset
    runs is not observed."""

    class Counting(base):  # type: ignore[misc, valid-type]
        def compute(self) -> Any:
            counts[label] = counts.get(label, 0) + 1
            return super().compute()

    return Counting()


def _update_counts(module: Any) -> dict[str, int]:
    return {name: m.update_count for name, m in sorted(module.named_children()) if name != "layer"}


def _recording_logger(pl: ModuleType, rows: list[Any]) -> Any:
    class Recording(pl.loggers.Logger):
        @property
        def name(self) -> str:
            return "recording"

        @property
        def version(self) -> int:
            return 0

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            rows.append([step, {key: plain(metrics[key]) for key in sorted(metrics)}])

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return Recording()


def _metric_dicts(trainer: Any) -> dict[str, Any]:
    return {
        "callback_metrics": metrics(trainer.callback_metrics),
        "logged_metrics": metrics(trainer.logged_metrics),
        "progress_bar_metrics": metrics(trainer.progress_bar_metrics),
    }


def _crafted(batch_idx: int, epoch: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """A value and (preds, target) of 2 samples whose accuracy varies by batch: 1, 0.5, 0, 1, ..."""
    value = float(batch_idx + 1 + 10 * epoch)
    hits = (batch_idx + epoch) % 3  # 0: both right, 1: one right, 2: none right
    target = torch.tensor([1, 0])
    preds = target.clone() if hits == 0 else torch.tensor([1, 1]) if hits == 1 else 1 - target
    return value, preds, target


def _logging_module(pl: ModuleType, counts: dict[str, int]) -> type:
    import torchmetrics

    class MetricLogging(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            self.train_mean = _counting(torchmetrics.MeanMetric, counts, "train_mean")
            self.train_sum = _counting(torchmetrics.SumMetric, counts, "train_sum")
            self.train_acc = _counting(torchmetrics.classification.BinaryAccuracy, counts, "train_acc")
            self.train_step_only = torchmetrics.MaxMetric()
            self.val_acc = _counting(torchmetrics.classification.BinaryAccuracy, counts, "val_acc")
            self.val_mean = _counting(torchmetrics.MeanMetric, counts, "val_mean")

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            value, preds, target = _crafted(batch_idx, self.current_epoch)
            self.train_mean(value)  # forward: the batch value, and accumulates
            self.log("train_mean", self.train_mean, on_step=True, on_epoch=True, prog_bar=True)
            self.train_sum.update(value)  # update only: no batch value to log on_step
            self.log("train_sum", self.train_sum)  # training_step default: on_step only
            self.train_acc(preds, target)
            self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
            self.train_step_only(value)
            self.log("train_step_only", self.train_step_only, on_step=True, on_epoch=False)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            value, preds, target = _crafted(batch_idx + 1, self.current_epoch)
            self.val_acc.update(preds, target)
            self.log("val_acc", self.val_acc, prog_bar=True)
            self.val_mean(value)
            self.log("val_mean", self.val_mean, on_step=True, on_epoch=True)

    return MetricLogging


def metrics_logging(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Metric objects logged in training (forward + on_step/on_epoch, update + default, on_step
    only) and validation (update + log, forward + on_step/on_epoch): the metric dicts seen by a
    callback at each epoch end and after fit, the rows a logger receives, and how often each
    metric computed and whether it was reset (2 epochs x 3 batches, 2 val batches, sanity check of 1 batch)."""
    counts: dict[str, int] = {}
    rows: list[Any] = []
    snapshots: dict[str, Any] = {}

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            epoch = trainer.current_epoch
            snapshots[f"on_train_epoch_end_{epoch}"] = _metric_dicts(trainer)
            snapshots[f"computes_at_train_epoch_end_{epoch}"] = dict(sorted(counts.items()))
            snapshots[f"update_counts_at_train_epoch_end_{epoch}"] = _update_counts(pl_module)

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            label = "sanity" if trainer.sanity_checking else str(trainer.current_epoch)
            snapshots[f"on_validation_epoch_end_{label}"] = _metric_dicts(trainer)

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            label = "sanity" if trainer.sanity_checking else str(trainer.current_epoch)
            snapshots[f"update_counts_at_validation_end_{label}"] = _update_counts(pl_module)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            snapshots[f"computes_at_train_epoch_start_{trainer.current_epoch}"] = dict(sorted(counts.items()))
            snapshots[f"update_counts_at_train_epoch_start_{trainer.current_epoch}"] = _update_counts(pl_module)

    flags = trainer_kwargs(
        str(root), callbacks=[Snapshot()], log_every_n_steps=1, logger=_recording_logger(pl, rows), num_sanity_val_steps=1
    )
    trainer = pl.Trainer(**flags)
    model = _logging_module(pl, counts)()
    trainer.fit(model, loader(6), loader(4, seed=1))
    snapshots["after_fit"] = _metric_dicts(trainer)
    snapshots["computes_after_fit"] = dict(sorted(counts.items()))
    snapshots["logger_rows"] = rows
    validated = trainer.validate(model, loader(4, seed=1), verbose=False)
    snapshots["validate_returns"] = plain(validated)
    snapshots["computes_after_validate"] = dict(sorted(counts.items()))
    snapshots["update_counts_after_validate"] = _update_counts(model)
    return snapshots


def metrics_collection(pl: ModuleType, root: Path) -> dict[str, Any]:
    """self.log_dict(MetricCollection) with a prefix and a postfix, in training (forward,
    on_step+on_epoch) and validation (update), with torchmetrics' compute groups on (two metrics
    sharing states) and off: the metric dicts after each epoch and the logger rows."""
    import torchmetrics
    from torchmetrics.classification import BinaryAccuracy, BinaryPrecision, BinaryRecall

    rows: list[Any] = []
    snapshots: dict[str, Any] = {}

    class CollectionLogging(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            metrics_ = {"acc": BinaryAccuracy(), "prec": BinaryPrecision(), "rec": BinaryRecall()}
            self.train_metrics = torchmetrics.MetricCollection(metrics_, prefix="train_")
            self.val_metrics = torchmetrics.MetricCollection(
                {"acc": BinaryAccuracy(), "total": torchmetrics.SumMetric()}, prefix="val/", postfix="_x",
                compute_groups=False,
            )  # fmt: skip

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            _, preds, target = _crafted(batch_idx, self.current_epoch)
            self.train_metrics(preds, target)
            self.log_dict(self.train_metrics, on_step=True, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            value, preds, target = _crafted(batch_idx + 1, self.current_epoch)
            self.val_metrics["acc"].update(preds, target)
            self.val_metrics["total"].update(value)
            self.log_dict(self.val_metrics)

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            snapshots[f"on_train_epoch_end_{trainer.current_epoch}"] = _metric_dicts(trainer)

    flags = trainer_kwargs(
        str(root), callbacks=[Snapshot()], log_every_n_steps=1, logger=_recording_logger(pl, rows), num_sanity_val_steps=0
    )
    trainer = pl.Trainer(**flags)
    trainer.fit(CollectionLogging(), loader(6), loader(4, seed=1))
    snapshots["after_fit"] = _metric_dicts(trainer)
    snapshots["logger_rows"] = rows
    return snapshots


def _one_error(pl: ModuleType, root: Path, step: Callable[[Any, Any], None]) -> Any:
    """Run ``step(module, batch_idx)`` inside training_step of a 1-epoch x 2-batch fit: "ok" with
    the callback_metrics, or the error's class name (both libraries name MisconfigurationException
    alike; fulmen's also derives from ValueError, so built-in bases would not compare)."""
    import torchmetrics

    class Dict(torchmetrics.Metric):
        def __init__(self) -> None:
            super().__init__()
            self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")

        def update(self, value: torch.Tensor) -> None:
            self.total += value

        def compute(self) -> dict[str, torch.Tensor]:
            return {"total": self.total, "double": 2 * self.total}

    class Erroring(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            self.mean = torchmetrics.MeanMetric()
            self.dict_metric = Dict()
            self.collection = torchmetrics.MetricCollection({"m": torchmetrics.MeanMetric()})

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            step(self, batch_idx)
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0))
    try:
        trainer.fit(Erroring(), loader(4))
    except Exception as error:  # noqa: BLE001 - the exception class is what is observed
        return {"raised": type(error).__name__}
    return {"ok": metrics(trainer.callback_metrics)}


def metrics_errors(pl: ModuleType, root: Path) -> dict[str, Any]:
    """What happens (accepted with these values, or the error's class) when a metric
    is logged with a reduce_fx, with sync_dist, when it is not an attribute of the module (and
    with metric_attribute), when its compute() returns a dict (on_epoch, and on_step with
    forward), and when a MetricCollection or a dict-returning metric is given to self.log."""
    import torchmetrics

    def log_with(**kwargs: Any) -> Callable[[Any, int], None]:
        def step(module: Any, batch_idx: int) -> None:
            module.mean(float(batch_idx + 1))
            module.log("m", module.mean, **kwargs)

        return step

    def detached(module: Any, batch_idx: int) -> None:
        if not hasattr(module, "_loose"):
            object.__setattr__(module, "_loose", torchmetrics.MeanMetric())  # not a submodule
        module._loose(float(batch_idx + 1))
        module.log("m", module._loose, on_epoch=True)

    def detached_named(module: Any, batch_idx: int) -> None:
        if not hasattr(module, "_loose"):
            object.__setattr__(module, "_loose", torchmetrics.MeanMetric())
        module._loose(float(batch_idx + 1))
        module.log("m", module._loose, on_epoch=True, metric_attribute="mean")

    def dict_epoch(module: Any, batch_idx: int) -> None:
        module.dict_metric.update(torch.tensor(float(batch_idx + 1)))
        module.log("d", module.dict_metric, on_step=False, on_epoch=True)

    def dict_step(module: Any, batch_idx: int) -> None:
        module.dict_metric(torch.tensor(float(batch_idx + 1)))
        module.log("d", module.dict_metric, on_step=True, on_epoch=False)

    def collection_to_log(module: Any, batch_idx: int) -> None:
        module.collection(float(batch_idx + 1))
        module.log("c", module.collection)

    def dict_to_log_dict(module: Any, batch_idx: int) -> None:
        module.dict_metric.update(torch.tensor(float(batch_idx + 1)))
        module.log_dict({"d": module.dict_metric}, on_step=False, on_epoch=True)

    cases: dict[str, Callable[[Any, int], None]] = {
        "reduce_fx_sum": log_with(on_epoch=True, reduce_fx="sum"),
        "reduce_fx_max_callable": log_with(on_epoch=True, reduce_fx=torch.max),
        "reduce_fx_custom": log_with(on_epoch=True, reduce_fx=lambda x: x.sum()),
        "sync_dist": log_with(on_epoch=True, sync_dist=True),
        "on_step_on_epoch_false": log_with(on_step=False, on_epoch=False),
        "not_an_attribute": detached,
        "not_an_attribute_named": detached_named,
        "dict_compute_on_epoch": dict_epoch,
        "dict_forward_on_step": dict_step,
        "collection_to_log": collection_to_log,
        "dict_metric_in_log_dict": dict_to_log_dict,
    }
    return {name: _one_error(pl, root / name, step) for name, step in cases.items()}


def _checkpoint_module(pl: ModuleType, seen: list[Any]) -> type:
    import torchmetrics

    class Persistent(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            self.kept = torchmetrics.SumMetric()
            self.kept.persistent(True)
            self.dropped = torchmetrics.SumMetric()  # states not persistent: torchmetrics' default
            self.val_kept = torchmetrics.MeanMetric()
            self.val_kept.persistent(True)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            value = float(batch_idx + 1 + 10 * self.current_epoch)
            self.kept(value)
            self.dropped(value)
            self.log("kept", self.kept, on_step=False, on_epoch=True)
            self.log("dropped", self.dropped, on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.val_kept.update(float(batch_idx + 1))
            self.log("val_kept", self.val_kept)

        def on_train_epoch_end(self) -> None:
            seen.append([self.current_epoch, metrics(self.trainer.callback_metrics)])

    return Persistent


def _flat_keys(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    keys: list[str] = []
    for key, value in tree.items():
        keys.extend(_flat_keys(value, f"{prefix}{key}."))
    return keys


def metrics_checkpoint(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A module with a persistent and a default (non-persistent) metric: the model state_dict
    keys and metric states of a checkpoint saved mid-epoch (after batch 1 of epoch 1, of 3), the
    loops section's key paths, and the epoch values of a run resumed from it next to an
    uninterrupted run's (2 epochs x 3 batches, 2 val batches)."""

    class SaveAt(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if (trainer.current_epoch, batch_idx) == (1, 1):
                trainer.save_checkpoint(str(root / "mid.ckpt"))

    def fit(callbacks: list[Any], ckpt_path: str | None = None) -> list[Any]:
        seen: list[Any] = []
        flags = trainer_kwargs(str(root), callbacks=callbacks, num_sanity_val_steps=0)
        pl.Trainer(**flags).fit(_checkpoint_module(pl, seen)(), loader(6), loader(4, seed=1), ckpt_path=ckpt_path)
        return seen

    uninterrupted = fit([SaveAt()])
    saved = torch.load(root / "mid.ckpt", map_location="cpu", weights_only=False)
    loops_keys = [k for k in _flat_keys(saved["loops"]) if not k.startswith("fit_loop.state_dict.fulmen.")]
    resumed = fit([], ckpt_path=str(root / "mid.ckpt"))
    return {
        "state_dict": {k: plain(v) for k, v in sorted(saved["state_dict"].items()) if not k.startswith("layer.")},
        "loops_keys": sorted(loops_keys),
        "uninterrupted": uninterrupted,
        "resumed": resumed,
    }


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "metrics_logging": metrics_logging,
    "metrics_collection": metrics_collection,
    "metrics_errors": metrics_errors,
    "metrics_checkpoint": metrics_checkpoint,
}
