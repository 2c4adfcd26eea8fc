"""Compatibility scenarios about the Trainer's public attributes, LearningRateMonitor,
logging with several validation loaders, an exception inside fit, running without a logger and
predict() results.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader

from tests.compat.models import base_module, loader, recording_callback, recording_datamodule, recording_module, trainer_kwargs
from tests.compat.normalise import error_or, metrics, plain, relative, tree
from tests.compat.readers import csv_rows

_MISSING = "<missing>"

# Trainer attributes read after fit (LIGHTNING_API.md "Attributes")
_TRAINER_ATTRIBUTES = (
    "current_epoch", "global_step", "max_epochs", "min_epochs", "max_steps", "min_steps",
    "accumulate_grad_batches", "check_val_every_n_epoch", "val_check_interval", "log_every_n_steps",
    "num_sanity_val_steps", "fast_dev_run", "gradient_clip_val", "gradient_clip_algorithm",
    "limit_train_batches", "limit_val_batches", "overfit_batches", "num_nodes", "num_devices",
    "world_size", "global_rank", "local_rank", "node_rank", "is_global_zero", "precision",
    "sanity_checking", "should_stop", "training", "validating", "testing", "predicting",
    "estimated_stepping_batches", "num_training_batches", "enable_validation",
)  # fmt: skip
_SCHEDULER_CONFIG_FIELDS = ("name", "interval", "frequency", "reduce_on_plateau", "monitor", "strict")


def _value(value: Any) -> Any:
    """Plain data for an attribute; str enums by value (as user code compares them)."""
    return plain(getattr(value, "value", value))


def _class_names(objects: Any) -> list[str]:
    return [type(item).__name__ for item in objects]


def _properties_module(pl: ModuleType) -> Any:
    class Configured(base_module(pl)):
        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
            return [optimizer], [{"scheduler": scheduler, "interval": "step", "frequency": 2}]

        def configure_callbacks(self) -> list[Any]:
            return [pl.callbacks.EarlyStopping(monitor="val_loss", patience=5)]

    return Configured()


def trainer_properties(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Trainer attributes with default callbacks (progress bar, summary, checkpoint) plus a
    user callback and one from configure_callbacks: 2 epochs x 2 batches, accumulate 2."""

    class UserCallback(pl.Callback):
        pass

    flags = trainer_kwargs(
        str(root),
        callbacks=[UserCallback()],
        enable_progress_bar=None,
        enable_model_summary=None,
        enable_checkpointing=None,
        logger=None,
        accumulate_grad_batches=2,
    )
    trainer = pl.Trainer(**flags)
    out: dict[str, Any] = {"callbacks_before_fit": _class_names(trainer.callbacks)}
    trainer.fit(_properties_module(pl), loader(4), loader(2, seed=1))
    out["callbacks_after_fit"] = _class_names(trainer.callbacks)
    state = trainer.state
    out["state"] = {key: _value(getattr(state, key, _MISSING)) for key in ("fn", "status", "stage", "finished")}
    for name in _TRAINER_ATTRIBUTES:
        out[f"attribute.{name}"] = _value(getattr(trainer, name, _MISSING))
    out["attribute.num_val_batches"] = plain([float(n) for n in trainer.num_val_batches])
    out["checkpoint_callback"] = type(trainer.checkpoint_callback).__name__
    out["checkpoint_callbacks"] = _class_names(trainer.checkpoint_callbacks)
    out["early_stopping_callback"] = type(trainer.early_stopping_callback).__name__
    out["optimizers"] = _class_names(trainer.optimizers)
    out["lr_scheduler_configs"] = [
        {field: _value(getattr(config, field, _MISSING)) for field in _SCHEDULER_CONFIG_FIELDS}
        | {"scheduler": type(config.scheduler).__name__}
        for config in trainer.lr_scheduler_configs
    ]
    out["loggers"] = _class_names(trainer.loggers)
    out["log_dir"] = relative(trainer.log_dir, root)
    out["ckpt_path"] = trainer.ckpt_path
    out["lr_after_fit"] = plain(trainer.optimizers[0].param_groups[0]["lr"])
    out["loop_limits"] = _loop_limits(pl, root)
    out["precision_aliases"] = {
        repr(flag): _value(pl.Trainer(**trainer_kwargs(str(root), precision=flag)).precision)
        for flag in (32, "32", 64, "64", "bf16", "bf16-mixed", "bf16-true", "32-true")
    }
    out["device.strategy"] = type(trainer.strategy).__name__
    out["device.accelerator"] = type(getattr(trainer, "accelerator", None)).__name__
    out["device.root_device"] = str(trainer.strategy.root_device)
    out["device.device_ids"] = plain(getattr(trainer, "device_ids", _MISSING))
    out["device.module_device_dtype"] = [str(trainer.lightning_module.device), str(trainer.lightning_module.dtype)]
    return out


_LOOP_LIMIT_CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "max_steps_10": {"max_steps": 10},
    "min_steps_3": {"min_steps": 3},
    "max_epochs_-1": {"max_epochs": -1},
    "min_epochs_2": {"min_epochs": 2, "max_epochs": 3},
}


def _limits(trainer: Any) -> list[Any]:
    return [_value(getattr(trainer, key, _MISSING)) for key in ("min_epochs", "max_epochs", "min_steps", "max_steps")]


def _loop_limits(pl: ModuleType, root: Path) -> dict[str, dict[str, list[Any]]]:
    """[min_epochs, max_epochs, min_steps, max_steps] as the Trainer reports them right after
    construction and in on_fit_start (which then stops the run: should_stop)."""
    out = {}
    for name, flags in _LOOP_LIMIT_CASES.items():
        seen: dict[str, list[Any]] = {}

        class Stop(pl.Callback):
            def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
                seen["at_fit_start"] = _limits(trainer)
                trainer.should_stop = True

        kwargs = trainer_kwargs(str(root), callbacks=[Stop()], limit_val_batches=0, **flags)
        if "max_epochs" not in flags:
            del kwargs["max_epochs"]
        trainer = pl.Trainer(**kwargs)
        seen["after_init"] = _limits(trainer)
        trainer.fit(base_module(pl)(), loader(2))
        out[name] = seen
    return out


def lr_monitor(pl: ModuleType, root: Path) -> dict[str, Any]:
    """LearningRateMonitor rows in metrics.csv, logging_interval "step" and "epoch", for SGD with
    momentum and an epoch StepLR (gamma 0.5): 2 epochs x 2 batches, log_every_n_steps=1."""
    out = {}
    for interval in ("step", "epoch"):
        logger = pl.loggers.CSVLogger(save_dir=str(root), name=f"lr_{interval}")
        monitor = pl.callbacks.LearningRateMonitor(logging_interval=interval, log_momentum=True)

        class Scheduled(base_module(pl)):
            def configure_optimizers(self) -> Any:
                optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
                return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)}

        flags = trainer_kwargs(str(root), logger=logger, callbacks=[monitor], log_every_n_steps=1)
        pl.Trainer(**flags).fit(Scheduled(), loader(4), loader(2, seed=1))
        rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
        lr_columns = [column for column in rows[0] if column.startswith(("lr-", "epoch", "step"))]
        out[interval] = {
            "header": rows[0],
            "lr_rows": [
                {column: value for column, value in zip(rows[0], row) if column in lr_columns}
                for row in rows[1:]
                if any(value for column, value in zip(rows[0], row) if column.startswith("lr-"))
            ],
        }
    return out


def multi_val_loader_logging(pl: ModuleType, root: Path) -> dict[str, Any]:
    """self.log in validation_step with two val loaders inside fit: the /dataloader_idx_N keys,
    add_dataloader_idx=False (also one name shared by both loaders), on_step+on_epoch names, and
    what each metric dict holds after fit (1 epoch x 2 batches)."""

    class TwoLoaders(base_module(pl)):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("val_metric", float(1 + 10 * dataloader_idx + batch_idx), prog_bar=True)
            self.log(f"only_{dataloader_idx}", float(dataloader_idx), add_dataloader_idx=False)

    class StepAndEpoch(base_module(pl)):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("both", float(1 + 10 * dataloader_idx + batch_idx), on_step=True, on_epoch=True)

    class SharedName(base_module(pl)):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("shared", float(1 + 10 * dataloader_idx + batch_idx), add_dataloader_idx=False)

    val: list[DataLoader] = [loader(4, seed=1), loader(2, seed=2)]
    second = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0))
    # error_or: a crash fails the step_and_epoch keys only, not the whole scenario
    second_outcome = error_or(lambda: second.fit(StepAndEpoch(), loader(4), val))
    shared = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0))
    # one name from both loaders with add_dataloader_idx=False: Lightning refuses it
    shared_outcome = error_or(lambda: shared.fit(SharedName(), loader(4), val))
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0))
    trainer.fit(TwoLoaders(), loader(4), val)
    return {
        "shared_name_without_dataloader_idx": "raised" if isinstance(shared_outcome, dict) else "ok",
        "step_and_epoch.fit": second_outcome,
        "step_and_epoch.callback_metrics": metrics(second.callback_metrics),
        "step_and_epoch.logged_metrics": metrics(second.logged_metrics),
        "callback_metrics": metrics(trainer.callback_metrics),
        "logged_metrics": metrics(trainer.logged_metrics),
        "progress_bar_metrics": metrics(trainer.progress_bar_metrics),
        "num_val_batches": plain([float(n) for n in trainer.num_val_batches]),
    }


def reload_dataloaders(pl: ModuleType, root: Path) -> dict[str, Any]:
    """How often the module's *_dataloader hooks run over 3 epochs (1 val batch, sanity check
    on) with reload_dataloaders_every_n_epochs 0, 1 and 2."""
    out = {}
    for every in (0, 1, 2):
        calls: list[str] = []
        model = recording_module(pl, calls, train=2, val=1, test=1)
        trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=3, reload_dataloaders_every_n_epochs=every))
        trainer.fit(model)
        wanted = [call for call in calls if call.endswith("_dataloader") or call == "on_train_epoch_start"]
        out[f"every_{every}"] = wanted
    return out


def _stopping_run(pl: ModuleType, root: Path, module: Any, **flags: Any) -> dict[str, Any]:
    events: list[list[Any]] = []

    class Where(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            events.append(["train", trainer.current_epoch, trainer.global_step])

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                events.append(["validate", trainer.current_epoch, trainer.global_step])

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            events.append(["on_train_end", trainer.current_epoch, trainer.global_step])

    kwargs = trainer_kwargs(str(root), max_epochs=3, num_sanity_val_steps=0, callbacks=[Where()], **flags)
    trainer = pl.Trainer(**kwargs)
    trainer.fit(module, loader(10), loader(2, seed=1))
    return {"events": events, "current_epoch": trainer.current_epoch, "global_step": trainer.global_step}


def stopping(pl: ModuleType, root: Path) -> dict[str, Any]:
    """trainer.should_stop = True from training_step at batch 1 of epoch 0 (with and without
    min_epochs=2), and limit_train_batches=0: which batches and validations still run."""

    class StopEarly(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.current_epoch == 0 and batch_idx == 1:
                self.trainer.should_stop = True
            return super().training_step(batch, batch_idx)

    return {
        "should_stop_in_step": _stopping_run(pl, root / "a", StopEarly()),
        "should_stop_in_step_min_epochs_2": _stopping_run(pl, root / "b", StopEarly(), min_epochs=2),
        "limit_train_batches_0": _stopping_run(pl, root / "c", base_module(pl)(), limit_train_batches=0),
    }


def exception_in_training_step(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A RuntimeError raised by training_step at batch 1: the hooks that still run (module,
    callback, datamodule), what propagates, and the trainer's state afterwards."""
    calls: list[str] = []

    class Failing(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    model = recording_module(pl, calls, train=2, val=1, test=1, base=Failing)
    datamodule = recording_datamodule(pl, calls, train=2, val=1)
    trainer = pl.Trainer(**trainer_kwargs(str(root), callbacks=[recording_callback(pl, calls)]))
    raised = None
    try:
        trainer.fit(model, datamodule=datamodule)
    except Exception as error:  # noqa: BLE001 - the type that propagates is what is observed
        raised = f"{type(error).__name__}: {error}"
    train_start = calls.index("Callback.on_train_start")
    return {
        "raised": raised,
        "hooks_from_train_start": calls[train_start:],
        "state": {key: _value(getattr(trainer.state, key, _MISSING)) for key in ("fn", "status", "stage", "finished")},
        "global_step": trainer.global_step,
    }


def trainer_without_logger(pl: ModuleType, root: Path) -> dict[str, Any]:
    """logger=False: trainer.logger / loggers / log_dir, and where the default ModelCheckpoint
    writes (1 epoch x 2 batches)."""
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, enable_checkpointing=None))
    trainer.fit(base_module(pl)(), loader(4), loader(2, seed=1))
    return {
        "logger": None if trainer.logger is None else type(trainer.logger).__name__,
        "loggers": _class_names(trainer.loggers),
        "log_dir": relative(trainer.log_dir, root),
        "checkpoint_dirpath": relative(trainer.checkpoint_callback.dirpath, root),
        "files": tree(root),
    }


def predict_results(pl: ModuleType, root: Path) -> dict[str, Any]:
    """What predict() returns with one and with two loaders, and with return_predictions=False."""

    class Predicting(base_module(pl)):
        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
            return self(batch[0]) + dataloader_idx

    model = Predicting()
    trainer = pl.Trainer(**trainer_kwargs(str(root)))
    one = trainer.predict(model, dataloaders=loader(4, seed=2))
    two = trainer.predict(model, dataloaders=[loader(4, seed=2), loader(2, seed=3)])
    none = trainer.predict(model, dataloaders=loader(4, seed=2), return_predictions=False)

    def shapes(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return list(value.shape)
        return [shapes(item) for item in value] if isinstance(value, (list, tuple)) else repr(value)

    return {
        "one_loader": shapes(one),
        "one_loader_values": plain(torch.cat(one).flatten()),
        "two_loaders": shapes(two),
        "two_loaders_second_values": plain(torch.cat(two[1]).flatten()),
        "return_predictions_false": shapes(none) if none is not None else None,
    }


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "trainer_properties": trainer_properties,
    "lr_monitor": lr_monitor,
    "multi_val_loader_logging": multi_val_loader_logging,
    "reload_dataloaders": reload_dataloaders,
    "stopping": stopping,
    "exception_in_training_step": exception_in_training_step,
    "trainer_without_logger": trainer_without_logger,
    "predict_results": predict_results,
}
