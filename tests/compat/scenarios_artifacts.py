"""Compatibility scenarios about what a run leaves behind and returns: the log directory
layout, hyperparameters, fast_dev_run, the progress bar's postfix, fit() twice, and test() /
validate() results (loggers' files: ``scenarios_loggers.py``; checkpoints: ``scenarios_checkpoints.py``).

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml

from tests.compat.models import base_module, hparams_module, loader, trainer_kwargs
from tests.compat.normalise import error_or, metrics, plain, relative, tree
from tests.compat.readers import tensorboard_scalars as read_scalars


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


def log_dir_layout(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Default logger + default ModelCheckpoint, two fits in the same default_root_dir:
    every file they leave, the logger's names, and hparams.yaml."""
    runs = []
    for _ in range(2):
        trainer = pl.Trainer(**trainer_kwargs(str(root), logger=None, enable_checkpointing=None))
        trainer.fit(hparams_module(pl)(lr=0.05), loader(4), loader(2, seed=1))
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
            "scalar_tags": sorted(read_scalars(logger.log_dir)),
        })  # fmt: skip
    hparams = yaml.safe_load((root / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    return {"runs": runs, "files": tree(root), "hparams_yaml": plain(hparams)}


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


def _test_module(pl: ModuleType) -> Any:
    class Evaluated(base_module(pl)):
        def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("test_metric", float(1 + 10 * dataloader_idx + batch_idx))
            self.log("test_const", 5.0, prog_bar=True)

        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("val_metric", float(1 + 10 * dataloader_idx + batch_idx))

    return Evaluated()


def _without_model(pl: ModuleType, root: Path) -> dict[str, Any]:
    """test() without a model: on a fresh Trainer, and after a fit without checkpointing."""
    fresh = pl.Trainer(**trainer_kwargs(str(root)))
    no_checkpoints = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1))
    no_checkpoints.fit(base_module(pl)(), loader(2), loader(2, seed=1))
    after_fit = error_or(lambda: no_checkpoints.test(dataloaders=loader(2, seed=2), verbose=False))
    return {
        "fresh_trainer": error_or(lambda: fresh.test(dataloaders=loader(2, seed=2), verbose=False)),
        "after_fit_without_checkpointing": plain(after_fit) if isinstance(after_fit, list) else after_fit,
        "ckpt_path_after_fit_without_checkpointing": relative(no_checkpoints.ckpt_path, root),
    }


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
        **{f"without_model.{key}": value for key, value in _without_model(pl, root).items()},
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
    "hyperparameters": hyperparameters,
    "fast_dev_run_files": fast_dev_run_files,
    "progress_bar_display": progress_bar_display,
    "fit_twice": fit_twice,
    "evaluation_results": evaluation_results,
}
