"""Lightning's type aliases import from Lightning's path and annotate the values fulmen accepts."""

from __future__ import annotations

import typing

import torch

from fulmen.runtime.optim import parse_optimizers
from fulmen.utilities.types import (
    STEP_OUTPUT,
    LRSchedulerConfigType,
    LRSchedulerTypeTuple,
    OptimizerLRScheduler,
    OptimizerLRSchedulerConfig,
)


def test_step_output_admits_a_tensor_a_dict_or_none() -> None:
    assert set(typing.get_args(STEP_OUTPUT)) >= {torch.Tensor, type(None)}


def test_configure_optimizers_dict_spelled_with_the_typed_dicts_is_what_fulmen_parses() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    config: OptimizerLRSchedulerConfig = {
        "optimizer": optimizer,
        "lr_scheduler": LRSchedulerConfigType(scheduler=scheduler, interval="step"),
    }
    assert isinstance(scheduler, LRSchedulerTypeTuple)
    assert OptimizerLRSchedulerConfig in typing.get_args(OptimizerLRScheduler)
    optimizers, schedulers = parse_optimizers(config)
    assert optimizers == [optimizer] and schedulers[0].interval == "step"
