"""Compatibility scenarios of ``pl.cli.LightningCLI``: the config ``--print_config`` prints (plain
and subclass mode, callbacks and a logger chosen by short name), the ``config.yaml`` that
``SaveConfigCallback`` writes and its refusal to overwrite one, and the result of a CLI fit with
an optimizer and scheduler chosen on the command line.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning. The CLI instantiates classes by import path, so the classes are
built for the ``pl`` in use and published as attributes of this module (``_publish``).
Class paths are normalised: ``pytorch_lightning.callbacks.early_stopping.EarlyStopping`` and
``fulmen.callbacks.EarlyStopping`` both read ``pl.callbacks.EarlyStopping``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml
from torch.nn import functional as F
from torch.utils.data import DataLoader

from tests.compat.models import dataset
from tests.compat.normalise import plain, relative

_LIBRARIES = ("pytorch_lightning.", "lightning.pytorch.", "fulmen.")
# Trainer flags of both libraries (Lightning 2.6 has two more: enable_autolog_hparams, model_registry)
_TRAINER_FLAGS = (
    "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks", "fast_dev_run",
    "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches", "limit_val_batches",
    "limit_test_batches", "limit_predict_batches", "overfit_batches", "val_check_interval",
    "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps", "enable_checkpointing",
    "enable_progress_bar", "enable_model_summary", "accumulate_grad_batches", "gradient_clip_val",
    "gradient_clip_algorithm", "deterministic", "benchmark", "inference_mode", "use_distributed_sampler",
    "profiler", "detect_anomaly", "barebones", "plugins", "sync_batchnorm", "reload_dataloaders_every_n_epochs",
    "default_root_dir",
)  # fmt: skip
_QUIET = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false"]  # fmt: skip


def _publish(pl: ModuleType) -> None:
    """Build the scenario's classes for ``pl`` and make them importable as ``tests.compat.scenarios_cli.X``."""

    class CliRegressor(pl.LightningModule):
        """A two-layer regression whose width and learning rate are CLI options."""

        def __init__(self, hidden: int = 4, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", F.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    class WideRegressor(CliRegressor):
        """A subclass with an option of its own (subclass mode)."""

        def __init__(self, hidden: int = 8, lr: float = 0.05, scale: float = 1.0) -> None:
            super().__init__(hidden=hidden, lr=lr)
            self.scale = scale

    class CliData(pl.LightningDataModule):
        """16 training and 8 validation samples of the compat regression problem."""

        def __init__(self, batch_size: int = 4, samples: int = 16) -> None:
            super().__init__()
            self.batch_size = batch_size
            self.samples = samples

        def train_dataloader(self) -> DataLoader:
            return DataLoader(dataset(self.samples, 0), batch_size=self.batch_size)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(dataset(8, 1), batch_size=self.batch_size)

    module = sys.modules[__name__]
    for cls in (CliRegressor, WideRegressor, CliData):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
        setattr(module, cls.__name__, cls)


def _cli(pl: ModuleType) -> ModuleType:
    _publish(pl)
    return importlib.import_module(f"{pl.__name__}.cli")


def _class_paths(value: Any) -> Any:
    """Library class paths as ``pl.<package>.<Name>`` (the module a class lives in may differ)."""
    if isinstance(value, dict):
        return {key: _class_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_class_paths(item) for item in value]
    if isinstance(value, str) and value.startswith(_LIBRARIES):
        parts = value.split(".")
        package = parts[2] if parts[0] == "lightning" else parts[1]
        return f"pl.{package}.{parts[-1]}"
    return value


def _printed_config(cli_module: ModuleType, args: list[str], **cli_kwargs: Any) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli_module.LightningCLI(args=args, **cli_kwargs)
    return out.getvalue()


def _config_observation(text: str) -> dict[str, Any]:
    """A config document split into what both libraries share and what their Trainers differ in."""
    config = _class_paths(yaml.safe_load(text))
    trainer = config.pop("trainer")
    sections = {key: config.pop(key) for key in ("seed_everything", "model", "data", "optimizer", "lr_scheduler")}
    return {
        "header_is_a_comment": text.startswith("# "),
        "top_level_keys": list(yaml.safe_load(text)),
        "trainer": {key: trainer[key] for key in _TRAINER_FLAGS},
        "trainer_keys": sorted(trainer),
        "subcommand_options": sorted([key, value] for key, value in config.items()),
        **plain(sections),
    }


def cli_print_config(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``fit --print_config`` with trainer, model, data, optimizer, scheduler, callback and logger options."""
    args = [
        "fit", "--trainer.max_epochs=3", "--trainer.limit_train_batches=2", f"--trainer.default_root_dir={root}",
        "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val_loss", "--trainer.callbacks.patience=2",
        "--trainer.logger=CSVLogger", "--trainer.logger.save_dir=logs", "--model.hidden=5", "--data.batch_size=2",
        "--optimizer=SGD", "--optimizer.lr=0.05", "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1",
        "--seed_everything=3", "--print_config",
    ]  # fmt: skip
    text = _printed_config(_cli(pl), args, model_class=_published("CliRegressor"), datamodule_class=_published("CliData"))
    observed = _config_observation(text.replace(str(root), "<root>"))
    callbacks = observed["trainer"].pop("callbacks")
    observed["early_stopping_class_path"] = [c["class_path"] for c in callbacks]
    observed["early_stopping_options"] = {k: callbacks[0]["init_args"][k] for k in ("monitor", "patience", "mode")}
    logger = observed["trainer"].pop("logger")
    observed["logger"] = {"class_path": logger["class_path"], "save_dir": logger["init_args"]["save_dir"]}
    return observed


def cli_subclass_mode(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``--model=WideRegressor --model.init_args.scale=...`` with ``subclass_mode_model=True``, and
    ``model_class=None`` (any LightningModule); the printed model/data sections and the instances."""
    cli_module = _cli(pl)
    model, data = _published("CliRegressor"), _published("CliData")
    printed = _printed_config(
        cli_module, ["fit", "--model=WideRegressor", "--model.init_args.scale=0.5", "--print_config"],
        model_class=model, datamodule_class=data, subclass_mode_model=True,
    )  # fmt: skip
    config = yaml.safe_load(printed)
    cli = cli_module.LightningCLI(
        datamodule_class=data, run=False, save_config_callback=None,
        args=["--model=CliRegressor", "--model.init_args.hidden=6", *_QUIET, f"--trainer.default_root_dir={root}"],
    )  # fmt: skip
    return {
        "printed_model": config["model"],
        "printed_data": config["data"],
        "any_model_type": type(cli.model).__name__,
        "any_model_hparams": _class_paths(plain(dict(cli.model.hparams))),
        "any_model_config": _class_paths(cli.config["model"].as_dict()),
    }


def _published(name: str) -> Any:
    return getattr(sys.modules[__name__], name)


def cli_saved_config(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The config.yaml a fit run saves into its log dir, then the error of a second run into that dir."""
    args = ["fit", *_QUIET, f"--trainer.default_root_dir={root}", "--trainer.max_epochs=1", "--trainer.logger=false",
            "--trainer.enable_checkpointing=false", "--model.hidden=3", "--seed_everything=5"]  # fmt: skip
    cli_module = _cli(pl)
    model, data = _published("CliRegressor"), _published("CliData")
    cli = cli_module.LightningCLI(model, data, args=args)
    path = Path(cli.trainer.log_dir) / "config.yaml"
    text = path.read_text().replace(str(root), "<root>")
    saved = _config_observation(text)
    del saved["trainer_keys"]  # cli_print_config compares them
    try:
        cli_module.LightningCLI(model, data, args=args)
        second = "no error"
    except RuntimeError as error:
        second = f"{type(error).__name__}: {error}".replace(str(root), "<root>")
    overwritten = cli_module.LightningCLI(model, data, args=args, save_config_kwargs={"overwrite": True})
    return {
        "where": relative(path, root),
        "files_in_log_dir": sorted(os.listdir(cli.trainer.log_dir)),
        "saved": saved,
        "second_run": second,
        "overwrite_true_epochs": overwritten.trainer.current_epoch,
        "callbacks": sorted(type(c).__name__ for c in cli.trainer.callbacks if "Progress" not in type(c).__name__),
    }


def cli_fit_result(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A CLI fit with ``--optimizer=Adam --lr_scheduler=StepLR``: the numbers it ends with."""
    args = ["fit", *_QUIET, f"--trainer.default_root_dir={root}", "--trainer.max_epochs=3", "--trainer.logger=false",
            "--trainer.enable_checkpointing=false", "--optimizer=Adam", "--optimizer.lr=0.05",
            "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5",
            "--seed_everything=11", "--data.batch_size=8"]  # fmt: skip
    cli_module = _cli(pl)
    cli = cli_module.LightningCLI(_published("CliRegressor"), _published("CliData"), args=args)
    optimizer = cli.trainer.optimizers[0]
    return {
        "epochs_and_steps": [cli.trainer.current_epoch, cli.trainer.global_step],
        "optimizer": [type(optimizer).__name__, plain(optimizer.param_groups[0]["lr"])],
        "schedulers": [type(s.scheduler).__name__ for s in cli.trainer.lr_scheduler_configs],
        "seed_in_config": cli.config["fit"]["seed_everything"],
        "weights": plain({k: v for k, v in cli.model.state_dict().items()}),
        "callback_metrics": plain(dict(cli.trainer.callback_metrics)),
    }


SCENARIOS = {
    "cli_print_config": cli_print_config,
    "cli_subclass_mode": cli_subclass_mode,
    "cli_saved_config": cli_saved_config,
    "cli_fit_result": cli_fit_result,
}
