"""Compatibility scenarios about what the loggers write: metrics.csv rows (every option that
decides which steps get a row), TensorBoard scalars, and logger names, versions and directories.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.compat.models import base_module, hparams_module, loader, trainer_kwargs
from tests.compat.normalise import error_or, metrics, plain, relative, tree
from tests.compat.readers import csv_rows
from tests.compat.readers import tensorboard_scalars as read_scalars
from tests.compat.scenarios_logging import _logging_module

_LOG_EVERY_CASES: dict[str, dict[str, Any]] = {
    "default_50": {},
    "every_7": {"log_every_n_steps": 7},
    "every_3_accumulate_2": {"log_every_n_steps": 3, "accumulate_grad_batches": 2},
}


def csv_log_every_n_steps(pl: ModuleType, root: Path) -> dict[str, Any]:
    """[epoch, step] of the metrics.csv rows holding a per-step metric, 2 epochs x 30 batches,
    for log_every_n_steps 50 (default), 7, and 3 with accumulate_grad_batches=2."""

    class Logged(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.log("t", float(batch_idx))
            return super().training_step(batch, batch_idx)

    out = {}
    for name, flags in _LOG_EVERY_CASES.items():
        logger = pl.loggers.CSVLogger(save_dir=str(root), name=name)
        trainer_flags = trainer_kwargs(str(root), logger=logger, limit_val_batches=0, **flags)
        pl.Trainer(**trainer_flags).fit(Logged(), loader(60))
        rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
        column = {key: index for index, key in enumerate(rows[0])}
        picked = [[row[column["epoch"]], row[column["step"]], row[column["t"]]] for row in rows[1:]]
        out[name] = [row for row in picked if row[2]]
    return out


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
        rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
        out[f"log_every_n_steps_{every}"] = [dict(zip(rows[0], row)) for row in rows[1:]]
    return out


def csv_test_rows(pl: ModuleType, root: Path) -> dict[str, Any]:
    """metrics.csv rows after fit (1 epoch x 2 batches) and two test() calls with CSVLogger:
    epoch and step of every row and which metrics it holds."""
    logger = pl.loggers.CSVLogger(save_dir=str(root), name="csv")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger, max_epochs=1, log_every_n_steps=1))
    model = base_module(pl)()
    trainer.fit(model, loader(4), loader(2, seed=1))
    trainer.test(model, dataloaders=loader(2, seed=2), verbose=False)
    trainer.test(model, dataloaders=loader(4, seed=3), verbose=False)
    rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
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
        trainer.fit(hparams_module(pl)(), loader(4), loader(2, seed=1))
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


def csv_logger(pl: ModuleType, root: Path) -> dict[str, Any]:
    """CSVLogger's metrics.csv (header and every row, as the raw text cells) for the logging
    scenario's module: 2 epochs x 3 batches, 2 val batches, log_every_n_steps=1."""
    logger = pl.loggers.CSVLogger(save_dir=str(root), name="csv")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger, log_every_n_steps=1))
    trainer.fit(_logging_module(pl)(), loader(6), loader(4, seed=1))
    rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
    # default log_every_n_steps (50) with 6 steps: no step rows, only epoch-level ones
    default_logger = pl.loggers.CSVLogger(save_dir=str(root), name="csv_default_interval")
    pl.Trainer(**trainer_kwargs(str(root), logger=default_logger)).fit(
        _logging_module(pl)(), loader(6), loader(4, seed=1)
    )
    default_rows = csv_rows(Path(default_logger.log_dir) / "metrics.csv")
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
    logger = pl.loggers.TensorBoardLogger(save_dir=str(root), name="tb")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger, log_every_n_steps=1))
    trainer.fit(_logging_module(pl)(), loader(6), loader(4, seed=1))
    return {"log_dir": relative(logger.log_dir, root), "files": tree(root), "scalars": read_scalars(logger.log_dir)}


def standalone_evaluation_logging(pl: ModuleType, root: Path) -> dict[str, Any]:
    """validate() then test() (no fit) of the logging scenario's module with CSVLogger: the
    metric dicts after each and the metrics.csv rows they leave; then test() on two loaders."""

    class Tested(_logging_module(pl)):
        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.log("s_default", float(batch_idx + 1))
            self.log("s_both", float(batch_idx + 1), on_step=True, on_epoch=True)

    logger = pl.loggers.CSVLogger(save_dir=str(root), name="eval")
    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=logger))
    model = Tested()
    out: dict[str, Any] = {}
    for stage in ("validate", "test"):
        returned = getattr(trainer, stage)(model, dataloaders=loader(4, seed=1), verbose=False)
        # one key per observation, so that each can fail on its own
        out[f"{stage}.returned"] = plain(returned)
        out[f"{stage}.callback_metrics"] = metrics(trainer.callback_metrics)
        out[f"{stage}.logged_metrics"] = metrics(trainer.logged_metrics)
    rows = csv_rows(Path(logger.log_dir) / "metrics.csv")
    out["rows"] = [dict(zip(rows[0], row)) for row in rows[1:]]
    loaders = [loader(4, seed=1), loader(2, seed=2)]
    # a test_step without dataloader_idx cannot take two loaders: what the user is told
    out["test_two_loaders_without_dataloader_idx"] = error_or(lambda: trainer.test(model, loaders, verbose=False))

    class TwoLoaders(Tested):
        def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            super().test_step(batch, batch_idx)

    # error_or: a crash here fails these two keys only, not the whole scenario
    out["test_two_loaders.returned"] = error_or(lambda: plain(trainer.test(TwoLoaders(), loaders, verbose=False)))
    out["test_two_loaders.callback_metrics"] = metrics(trainer.callback_metrics)
    return out


def evaluation_returned_keys(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Which logged names validate()/test() return, for every logger/prog_bar/on_step/on_epoch
    combination and an epoch-end log (one loader of 2 batches, default logger)."""

    class Combos(base_module(pl)):
        def _combos(self, prefix: str, batch_idx: int) -> None:
            v = float(batch_idx + 1)
            self.log(f"{prefix}_default", v)
            self.log(f"{prefix}_step_only", v, on_step=True, on_epoch=False)
            self.log(f"{prefix}_pbar_no_logger", v, prog_bar=True, logger=False)
            self.log(f"{prefix}_no_logger", v, logger=False)
            self.log(f"{prefix}_max", v, reduce_fx="max")

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self._combos("v", batch_idx)

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self._combos("t", batch_idx)

        def on_validation_epoch_end(self) -> None:
            self.log("v_epoch_end", 9.0)

        def on_test_epoch_end(self) -> None:
            self.log("t_epoch_end", 9.0)

    trainer = pl.Trainer(**trainer_kwargs(str(root), logger=None))
    model = Combos()
    return {
        stage: plain(getattr(trainer, stage)(model, dataloaders=loader(4, seed=1), verbose=False))
        for stage in ("validate", "test")
    }


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "evaluation_returned_keys": evaluation_returned_keys,
    "standalone_evaluation_logging": standalone_evaluation_logging,
    "csv_logger": csv_logger,
    "csv_logger_accumulation": csv_logger_accumulation,
    "csv_log_every_n_steps": csv_log_every_n_steps,
    "csv_test_rows": csv_test_rows,
    "tensorboard_scalars": tensorboard_scalars,
    "logger_options": logger_options,
}
