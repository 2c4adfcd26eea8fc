"""LightningArgumentParser's class groups and instantiate_class."""

from __future__ import annotations

import pytest
import torch

from fulmen.callbacks import EarlyStopping
from fulmen.cli import LightningArgumentParser, instantiate_class
from fulmen.errors import MisconfigurationException
from tests.cli.models import TinyRegressor


def test_a_class_that_is_not_a_lightning_class_is_refused() -> None:
    with pytest.raises(MisconfigurationException, match="You should provide either a callable or a subclass of"):
        LightningArgumentParser().add_lightning_class_args(torch.nn.Linear, "model")


def test_callback_groups_are_remembered_and_instantiated() -> None:
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(EarlyStopping, "early_stopping")
    assert parser.callback_keys == ["early_stopping"]
    init = parser.instantiate(parser.parse_args(["--early_stopping.monitor=val_acc", "--early_stopping.mode=max"]))
    assert isinstance(init.early_stopping, EarlyStopping) and init.early_stopping.monitor == "val_acc"


def test_a_function_returning_a_module_counts_as_its_class() -> None:
    def build(hidden: int = 2) -> TinyRegressor:
        return TinyRegressor(hidden=hidden)

    parser = LightningArgumentParser()
    parser.add_lightning_class_args(build, "model")
    assert parser.parse_args(["--model.hidden=5"]).model.hidden == 5


def test_optimizer_groups_take_only_optimizers() -> None:
    parser = LightningArgumentParser()
    with pytest.raises(MisconfigurationException, match=r"not subclasses of torch\.optim\.Optimizer"):
        parser.add_optimizer_args(torch.nn.Linear)  # type: ignore[arg-type]
    parser.add_optimizer_args(torch.optim.SGD)
    parser.add_lr_scheduler_args(torch.optim.lr_scheduler.StepLR)
    config = parser.parse_args(["--optimizer.lr=0.3", "--lr_scheduler.step_size=2"])
    assert config.optimizer.lr == 0.3 and "params" not in config.optimizer  # the CLI passes the parameters
    assert set(parser._optimizers) == {"optimizer"} and set(parser._lr_schedulers) == {"lr_scheduler"}


def test_instantiate_class_builds_from_class_path_and_init_args() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = instantiate_class(params, {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.02}})
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 0.02
    scheduler = instantiate_class(optimizer, {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3}})
    assert scheduler.step_size == 3
