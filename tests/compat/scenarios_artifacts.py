"""Compatibility scenarios about what a run leaves behind and returns: log directories,
CSV rows, TensorBoard scalars, test() / validate() results (checkpoints: ``scenarios_checkpoints.py``).

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
import yaml

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import metrics, plain, relative, tree


def _hparams_module(pl: ModuleType) -> type:
    class WithHparams(base_module(pl)):
        def __init__(self, lr: float = 0.1, hidden: int = 3, name: str = "tiny") -> None:
            super().__init__()
            self.save_hyperparameters()

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

    return WithHparams


def hyperparameters(pl: ModuleType, root: Path) -> dict[str, Any]:
    """save_hyperparameters(ignore=...) with a dict value and **kwargs, plus a datamodule's own:
    hparams, hparams.yaml (CSVLogger), the checkpoint's hparams keys, and load_from_checkpoint
    with an override (1 epoch x 2 batches)."""

    class WithHparams(base_module(pl)):
        def __init__(self, lr: float = 0.1, layers: Any = None, cfg: Any = None, ignored: Any = None, **kwargs: Any):
            super().__init__()
            self.save_hyperparameters(ignore=["ignored"])

    class Data(pl.LightningDataModule):
        def __init__(self, batch_size: int = 2) -> None:
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self) -> Any:
            return loader(4, batch_size=self.hparams.batch_size)

        def val_dataloader(self) -> Any:
            return loader(2, seed=1)

    model = WithHparams(lr=0.05, layers=[4, 1], cfg={"depth": 2, "act": "relu"}, ignored=object(), extra="x")
    logger = pl.loggers.CSVLogger(save_dir=str(root), name="hp")
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, logger=logger, enable_checkpointing=None))
    trainer.fit(model, datamodule=Data(batch_size=2))
    path = trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "hparams": plain(dict(model.hparams)),
        "hparams_initial": plain(dict(model.hparams_initial)),
        "hparams_yaml": plain(yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text())),
        "checkpoint_hparams_keys": {
            key: plain(dict(value)) if isinstance(value, dict) else plain(value)
            for key, value in sorted(checkpoint.items())
            if "hparams" in key or "hyper_parameters" in key
        },
        "reloaded_hparams": plain(dict(WithHparams.load_from_checkpoint(path, lr=0.5).hparams)),
    }


def _scalars(log_dir: str) -> dict[str, list[list[Any]]]:
    """tag -> [[step, value], ...] as TensorBoard reads them back from the tfevents files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return {
        tag: [[event.step, plain(event.value)] for event in events.Scalars(tag)]
        for tag in sorted(events.Tags()["scalars"])
    }


def log_dir_layout(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Default logger + default ModelCheckpoint, two fits in the same default_root_dir:
    every file they leave, the logger's names, and hparams.yaml."""
    runs = []
    for _ in range(2):
        trainer = pl.Trainer(**trainer_kwargs(str(root), logger=None, enable_checkpointing=None))
        trainer.fit(_hparams_module(pl)(lr=0.05), loader(4), loader(2, seed=1))
        logger = trainer.logger
        runs.append({
            "logger_class": type(logger).__name__,
            "trainer_log_dir": relative(trainer.log_dir, root),
            "logger_log_dir": relative(logger.log_dir, root),
            "logger_save_dir": relative(logger.save_dir, root),
            "logger_name": logger.name,
            "logger_version": logger.version,
            "checkpoint_dirpath": relative(trainer.checkpoint_callback.dirpath, root),
            "best_model_path": relative(trainer.checkpoint_callback.best_model_path, root),
            "scalar_tags": sorted(_scalars(logger.log_dir)),
        })  # fmt: skip
    hparams = yaml.safe_load((root / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    return {"runs": runs, "files": tree(root), "hparams_yaml": plain(hparams)}


def csv_logger_accumulation(pl: ModuleType, root: Path) -> dict[str, Any]:
    """metrics.csv under accumulate_grad_batches=2 (2 epochs x 3 batches) with
    log_every_n_steps 1 and 2: which steps get rows for a per-batch and an epoch metric."""

    class Logged(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("t", float(batch_idx + 1 + 10 * self.current_epoch), on_step=True, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

    out = {}
    for every in (1, 2):
        logger = pl.loggers.CSVLogger(save_dir=str(root), name=f"every_{every}")
        flags = trainer_kwargs(str(root), logger=logger, log_every_n_steps=every, accumulate_grad_batches=2)
        pl.Trainer(**flags).fit(Logged(), loader(6), loader(2, seed=1))
        rows = _csv_rows(Path(logger.log_dir) / "metrics.csv")
        out[f"log_every_n_steps_{every}"] = [dict(zip(rows[0], row)) for row in rows[1:]]
    return out


def fast_dev_run_files(pl: ModuleType, root: Path) -> dict[str, Any]:
    """fast_dev_run=True with the default logger and checkpointing: what it writes, the logger."""
    trainer = pl.Trainer(**trainer_kwargs(str(root), fast_dev_run=True, logger=None, enable_checkpointing=None))
    trainer.fit(base_module(pl)(), loader(4), loader(2, seed=1))
    return {
        "files": tree(root),
        "logger": type(trainer.logger).__name__,
        "log_dir": relative(trainer.log_dir, root),
    }


def progress_bar_display(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The default progress bar callback and the postfix dict it shows (get_metrics) after a fit
    with the default logger and prog_bar metrics logged on step, on epoch and in validation."""

    class Shown(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("shown_step", float(batch_idx + 1), prog_bar=True)
            self.log("shown_both", float(batch_idx + 1), prog_bar=True, on_step=True, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("shown_val", float(batch_idx + 1), prog_bar=True)

    model = Shown()
    flags = trainer_kwargs(str(root), logger=None, enable_progress_bar=None, max_epochs=1)
    trainer = pl.Trainer(**flags)
    trainer.fit(model, loader(4), loader(2, seed=1))
    bar = trainer.progress_bar_callback
    return {"callback": type(bar).__name__, "get_metrics": plain(bar.get_metrics(trainer, model))}


def csv_test_rows(pl: ModuleType, root: Path) -> dict[str, Any]:
    """metrics.csv rows after fit (1 epoch x 2 batches) and two test() calls with CSVLogger:
    epoch and step of every row and which metrics it holds."""
    logger = pl.loggers.CSVLogger(save_dir=str(root), name="csv")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger, max_epochs=1, log_every_n_steps=1))
    model = base_module(pl)()
    trainer.fit(model, loader(4), loader(2, seed=1))
    trainer.test(model, dataloaders=loader(2, seed=2), verbose=False)
    trainer.test(model, dataloaders=loader(4, seed=3), verbose=False)
    rows = _csv_rows(Path(logger.log_dir) / "metrics.csv")
    return {
        "header": rows[0],
        "rows": [
            {
                "epoch": row[rows[0].index("epoch")],
                "step": row[rows[0].index("step")],
                "metrics": sorted(key for key, value in zip(rows[0], row) if value and key not in ("epoch", "step")),
            }
            for row in rows[1:]
        ],
    }


def _enum_value(value: Any) -> Any:
    """Lightning's str enums by value (as user code compares them); plain strings as they are."""
    return getattr(value, "value", value)


def fit_twice(pl: ModuleType, root: Path) -> dict[str, Any]:
    """trainer.fit called twice on the same Trainer (max_epochs=1, 2 batches): what the second
    call runs and where the counters end."""
    steps: list[list[int]] = []

    class Counted(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            steps.append([self.current_epoch, batch_idx, self.global_step])
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0))
    model = Counted()
    trainer.fit(model, loader(4), loader(2, seed=1))
    first = list(steps)
    steps.clear()
    trainer.fit(model, loader(4), loader(2, seed=1))
    return {
        "first_fit_steps": first,
        "second_fit_steps": steps,
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "state": {key: _enum_value(getattr(trainer.state, key)) for key in ("fn", "status")},
    }


_LOGGER_CASES: dict[str, Callable[[ModuleType, Path], Any]] = {
    "tb_and_csv": lambda pl, root: [
        pl.loggers.TensorBoardLogger(save_dir=str(root)),
        pl.loggers.CSVLogger(save_dir=str(root)),
    ],
    "tb_empty_name_str_version": lambda pl, root: pl.loggers.TensorBoardLogger(str(root), name="", version="custom"),
    "tb_sub_dir_no_hp_metric": lambda pl, root: pl.loggers.TensorBoardLogger(
        str(root), name="tb", sub_dir="sub", default_hp_metric=False
    ),
    "csv_int_version": lambda pl, root: pl.loggers.CSVLogger(str(root), name="csv", version=3),
}


def logger_options(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Logger names and versions: two loggers, an empty name with a string version, sub_dir,
    an int CSV version: log_dir, version, checkpoint dirpath and files (1 epoch, hparams saved)."""
    out = {}
    for name, make in _LOGGER_CASES.items():
        case_root = root / name
        loggers = make(pl, case_root)
        flags = trainer_kwargs(str(case_root), max_epochs=1, logger=loggers, enable_checkpointing=None)
        trainer = pl.Trainer(**flags)
        trainer.fit(_hparams_module(pl)(), loader(4), loader(2, seed=1))
        out[name] = {
            "trainer_log_dir": relative(trainer.log_dir, case_root),
            "loggers": [
                [type(lg).__name__, plain(lg.name), plain(lg.version), relative(lg.log_dir, case_root)]
                for lg in trainer.loggers
            ],
            "checkpoint_dirpath": relative(trainer.checkpoint_callback.dirpath, case_root),
            "files": tree(case_root),
        }
    return out


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def csv_logger(pl: ModuleType, root: Path) -> dict[str, Any]:
    """CSVLogger's metrics.csv (header and every row, as the raw text cells) for the logging
    scenario's module: 2 epochs x 3 batches, 2 val batches, log_every_n_steps=1."""
    from tests.compat.scenarios import _logging_module  # the same module as "logging"

    logger = pl.loggers.CSVLogger(save_dir=str(root), name="csv")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger, log_every_n_steps=1))
    trainer.fit(_logging_module(pl)(), loader(6), loader(4, seed=1))
    rows = _csv_rows(Path(logger.log_dir) / "metrics.csv")
    # default log_every_n_steps (50) with 6 steps: no step rows, only epoch-level ones
    default_logger = pl.loggers.CSVLogger(save_dir=str(root), name="csv_default_interval")
    pl.Trainer(**trainer_kwargs(str(root), logger=default_logger)).fit(
        _logging_module(pl)(), loader(6), loader(4, seed=1)
    )
    default_rows = _csv_rows(Path(default_logger.log_dir) / "metrics.csv")
    return {
        "rows_default_log_every_n_steps": [dict(zip(default_rows[0], row)) for row in default_rows[1:]],
        "log_dir": relative(logger.log_dir, root),
        "version": logger.version,
        "files": tree(root),
        "header": rows[0],
        "logged_metrics_after_fit": metrics(trainer.logged_metrics),
        "rows": [dict(zip(rows[0], row)) for row in rows[1:]],
    }


def tensorboard_scalars(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The scalars TensorBoard reads back from the tfevents files (tag -> [step, value]) for
    the logging scenario's module, and the files TensorBoardLogger leaves."""
    from tests.compat.scenarios import _logging_module

    logger = pl.loggers.TensorBoardLogger(save_dir=str(root), name="tb")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger, log_every_n_steps=1))
    trainer.fit(_logging_module(pl)(), loader(6), loader(4, seed=1))
    return {"log_dir": relative(logger.log_dir, root), "files": tree(root), "scalars": _scalars(logger.log_dir)}


def _test_module(pl: ModuleType) -> Any:
    class Evaluated(base_module(pl)):
        def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("test_metric", float(1 + 10 * dataloader_idx + batch_idx))
            self.log("test_const", 5.0, prog_bar=True)

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("val_metric", float(1 + 10 * dataloader_idx + batch_idx))

    return Evaluated()


def evaluation_results(pl: ModuleType, root: Path) -> dict[str, Any]:
    """What test() and validate() return with one and with two dataloaders, callback_metrics
    after a two-loader test, and which checkpoint test()/validate() load after a fit with a
    monitored ModelCheckpoint (ckpt_path "best", "last", none without a model, none with one)."""
    model = _test_module(pl)
    trainer = pl.Trainer(**trainer_kwargs(str(root)))
    one = trainer.test(model, dataloaders=loader(4, seed=2), verbose=False)
    two = trainer.test(model, dataloaders=[loader(4, seed=2), loader(4, seed=3)], verbose=False)
    after_two = metrics(trainer.callback_metrics)
    validate_two = trainer.validate(model, dataloaders=[loader(4, seed=2), loader(4, seed=3)], verbose=False)
    after_validate = metrics(trainer.callback_metrics)

    checkpoint_cb = pl.callbacks.ModelCheckpoint(dirpath=str(root / "ckpt"), monitor="val_loss")
    fitted = pl.Trainer(**trainer_kwargs(str(root), max_epochs=3, callbacks=[checkpoint_cb], enable_checkpointing=True))
    fitted.fit(base_module(pl)(), loader(4), loader(2, seed=1))
    best = fitted.test(dataloaders=loader(2, seed=2), ckpt_path="best", verbose=False)
    ckpt_paths = {"test_ckpt_best": relative(fitted.ckpt_path, root)}
    fitted.test(dataloaders=loader(2, seed=2), verbose=False)  # no model, no ckpt_path
    ckpt_paths["test_no_model_no_ckpt_path"] = relative(fitted.ckpt_path, root)
    fitted.validate(base_module(pl)(), dataloaders=loader(2, seed=2), verbose=False)
    ckpt_paths["validate_with_model"] = relative(fitted.ckpt_path, root)
    fitted.test(dataloaders=loader(2, seed=2), ckpt_path="last", verbose=False)
    ckpt_paths["test_ckpt_last"] = relative(fitted.ckpt_path, root)
    return {
        "test_one_loader": plain(one),
        "test_two_loaders": plain(two),
        "callback_metrics_after_two_loader_test": after_two,
        "validate_two_loaders": plain(validate_two),
        "callback_metrics_after_validate": after_validate,
        "ckpt_path_after": ckpt_paths,
        "test_best_result_keys": [sorted(result) for result in best],
    }


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "log_dir_layout": log_dir_layout,
    "csv_logger": csv_logger,
    "tensorboard_scalars": tensorboard_scalars,
    "hyperparameters": hyperparameters,
    "csv_logger_accumulation": csv_logger_accumulation,
    "fast_dev_run_files": fast_dev_run_files,
    "progress_bar_display": progress_bar_display,
    "csv_test_rows": csv_test_rows,
    "fit_twice": fit_twice,
    "logger_options": logger_options,
    "evaluation_results": evaluation_results,
}
