"""Compatibility scenarios about the experiment-tracking loggers: what MLFlowLogger leaves in a
local file store (metric histories, params, tags, run status, checkpoint artifacts) and what
WandbLogger writes into an offline run (history rows, summary, config, metric definitions),
read back through mlflow's client and from the offline run file; plus the loggers' names,
versions and folders as the Trainer uses them. Ids and timestamps are replaced or left out.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning (mlflow and wandb are imported: they are what is read back).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import plain, relative
from tests.compat.readers import mlflow_run, wandb_offline_run

# hyperparameters that exercise flattening (mlflow), truncation (mlflow, 250 characters) and
# callables (wandb's config shows a class by its name)
HPARAMS: dict[str, Any] = {
    "lr": 0.1,
    "optim": {"name": "sgd", "betas": [0.9, 0.99]},
    "layers": [{"width": 4}, {"width": 1}],
    "note": "n" * 300,
    "activation": torch.nn.ReLU,
}


_RUN_TIME = re.compile(r"\d{8}_\d{6}")  # in an offline run's folder name


_MLFLOW_CONTEXT_TAGS = {"mlflow.runName", "mlflow.source.name", "mlflow.source.type", "mlflow.user"}


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for one scenario; restore them (and WANDB_MODE, which Lightning's
    offline WandbLogger sets for the whole process) afterwards."""
    names = [*values, "WANDB_MODE"]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _tracked_module(pl: ModuleType, fail_at_step: int | None = None) -> Any:
    """Logs crafted values: a per-step metric with a '/', one with characters MLflow refuses, an
    epoch mean, and a val_loss that improves every epoch (so the best checkpoint moves)."""

    class Tracked(base_module(pl)):
        def __init__(self, **hparams: Any) -> None:
            super().__init__()
            self.save_hyperparameters(hparams)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if fail_at_step is not None and self.global_step == fail_at_step:
                raise RuntimeError("scripted failure")
            value = float(batch_idx + 1 + 10 * self.current_epoch)
            self.log("train/value", value)
            self.log("odd:name!", value)
            self.log("epoch_mean", value, on_step=False, on_epoch=True)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", float(10 - self.current_epoch))

    return Tracked(**HPARAMS)


def _fit(pl: ModuleType, root: Path, logger: Any, fail_at_step: int | None = None) -> tuple[Any, Any, list[str]]:
    """Fit 2 epochs x 2 batches (1 val batch) with ModelCheckpoint(monitor="val_loss"); the trainer,
    the callback and the logger warnings raised during the fit."""
    checkpoint = pl.callbacks.ModelCheckpoint(monitor="val_loss")
    flags = trainer_kwargs(str(root), logger=logger, callbacks=[checkpoint], enable_checkpointing=True)
    trainer = pl.Trainer(**flags, log_every_n_steps=1, num_sanity_val_steps=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.fit(_tracked_module(pl, fail_at_step), loader(4), loader(2, seed=1))
        except RuntimeError as error:
            if "scripted failure" not in str(error):
                raise
    messages = sorted({str(w.message) for w in caught if "MLFlow" in str(w.message) or "wandb" in str(w.message)})
    return trainer, checkpoint, messages


def _replace_ids(value: Any, ids: dict[str, str]) -> Any:
    """Every id inside strings (paths, artifact names) replaced by its placeholder."""
    if isinstance(value, str):
        for real, placeholder in ids.items():
            value = value.replace(real, placeholder)
        return value
    if isinstance(value, list):
        return [_replace_ids(item, ids) for item in value]
    if isinstance(value, dict):
        return {_replace_ids(key, ids): _replace_ids(item, ids) for key, item in value.items()}
    return value


def _mlflow_case(pl: ModuleType, root: Path, log_model: Any, fail_at_step: int | None = None) -> dict[str, Any]:
    uri = f"file:{root}"
    logger = pl.loggers.MLFlowLogger(
        experiment_name="compat", run_name="run-a", tracking_uri=uri, tags={"team": "compat"}, log_model=log_model
    )
    trainer, checkpoint, messages = _fit(pl, root, logger, fail_at_step)
    run = mlflow_run(uri, logger.run_id)
    tags = run.pop("tags")
    run["tags"] = {key: value for key, value in tags.items() if not key.startswith("mlflow.") or key == "mlflow.runName"}
    # mlflow's own context tags: their values name the user and the script (and git, where the
    # script is in a repository), so only which of the always-present ones exist is compared
    run["mlflow_tag_names"] = sorted(key for key in tags if key in _MLFLOW_CONTEXT_TAGS)
    ids = {logger.run_id: "<run_id>", logger.experiment_id: "<experiment_id>"}
    run["logger"] = {
        "name_is_experiment_id": logger.name == logger.experiment_id,
        "version_is_run_id": logger.version == logger.run_id,
        "save_dir": relative(logger.save_dir, root),
        "log_dir": relative(logger.log_dir, root),
        "trainer_log_dir": relative(trainer.log_dir, root),
        "checkpoint_dirpath": relative(checkpoint.dirpath, root),
        "best_model_path": relative(checkpoint.best_model_path, root),
    }
    run["warnings"] = messages
    return _replace_ids(run, ids)


def mlflow_file_store(pl: ModuleType, root: Path) -> dict[str, Any]:
    """MLFlowLogger(tracking_uri="file:<dir>", run_name, tags) over a 2-epoch fit, read back
    through mlflow's client: with log_model=True (best checkpoint copied at the end), "all"
    (each checkpoint as saved), and a fit that fails at step 3 (status FAILED)."""
    with _environment(MLFLOW_ALLOW_FILE_STORE="true"):
        return {
            "log_model_true": _mlflow_case(pl, root / "true", True),
            "log_model_all": _mlflow_case(pl, root / "all", "all"),
            "failed_fit": _mlflow_case(pl, root / "failed", False, fail_at_step=3),
        }


def wandb_offline(pl: ModuleType, root: Path) -> dict[str, Any]:
    """WandbLogger(offline=True, project, name) over a 2-epoch fit: the offline run's history rows,
    summary, config and metric definitions; the logger's name, version and folders; and the error
    for offline=True with log_model=True."""
    import wandb

    with _environment(WANDB_SILENT="true", WANDB_CONSOLE="off", WANDB_DISABLE_GIT="true"):
        logger = pl.loggers.WandbLogger(name="run-a", save_dir=str(root), offline=True, project="compat")
        version_before_fit = logger.version
        trainer, checkpoint, messages = _fit(pl, root, logger)
        run_id = logger.version
        run_dir = Path(logger.experiment.dir).parent
        properties = {
            "name": logger.name,
            "version_before_fit": version_before_fit,
            "version_is_run_id": run_id == logger.experiment.id,
            "display_name": logger.experiment.name,
            "save_dir": relative(logger.save_dir, root),
            "log_dir": relative(logger.log_dir, root),
            "trainer_log_dir": relative(trainer.log_dir, root),
            "checkpoint_dirpath": relative(checkpoint.dirpath, root),
            "run_dir": _RUN_TIME.sub("<time>", relative(run_dir, root) or ""),
        }
        wandb.finish()
        wandb.teardown()  # stops wandb's service process, which writes the run file in the background
        observed = wandb_offline_run(run_dir)
        try:
            pl.loggers.WandbLogger(offline=True, log_model=True)
            refused: Any = False
        except Exception as error:  # noqa: BLE001 - the class name is what is compared
            refused = type(error).__name__
    observed["logger"] = _replace_ids(properties, {run_id: "<run_id>"})
    observed["warnings"] = messages
    observed["offline_with_log_model"] = refused
    return plain(observed)


SCENARIOS = {"mlflow_file_store": mlflow_file_store, "wandb_offline": wandb_offline}
