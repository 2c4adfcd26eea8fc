"""The metrics a ModelCheckpoint save sees, and the score it ranks by."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fulmen.callbacks.checkpoint_monitor import check_monitor_logged, monitor_candidates, monitored_score
from fulmen.errors import MisconfigurationException


def test_candidates_have_integer_epoch_and_step() -> None:
    trainer = SimpleNamespace(current_epoch=2, global_step=30, callback_metrics={"val_loss": torch.tensor(0.5)})
    candidates = monitor_candidates(trainer)
    assert int(candidates["epoch"]) == 2 and int(candidates["step"]) == 30
    assert "epoch" not in trainer.callback_metrics  # a copy: the trainer's metrics are untouched
    # self.log("epoch", ...) arrives as a float tensor; names want "epoch=3", not "epoch=3.0"
    trainer.callback_metrics = {"epoch": torch.tensor(3.0), "step": torch.tensor(7.0)}
    candidates = monitor_candidates(trainer)
    assert candidates["epoch"].dtype == torch.int32 and int(candidates["epoch"]) == 3
    assert int(candidates["step"]) == 7


def test_score_is_a_tensor_or_none() -> None:
    assert monitored_score({"acc": 0.75}, "acc") == torch.tensor(0.75)
    score = torch.tensor(0.5)
    assert monitored_score({"loss": score}, "loss") is score
    assert monitored_score({"loss": score}, "val_loss") is None


def test_missing_monitor_warns_until_a_validation_ran_then_raises() -> None:
    check_monitor_logged("val_loss", {"val_loss": torch.tensor(1.0)}, validation_ran=True)  # present: silent
    candidates = {"train_loss": torch.tensor(1.0), "epoch": torch.tensor(0), "step": torch.tensor(4)}
    with pytest.warns(UserWarning, match=r"metrics: \['train_loss'\]"):  # epoch/step are not listed
        check_monitor_logged("val_loss", candidates, validation_ran=False)
    with pytest.raises(MisconfigurationException, match="HINT: Did you call `log\\('val_loss'"):
        check_monitor_logged("val_loss", candidates, validation_ran=True)
