"""``Trainer(accumulate_grad_batches={epoch: factor})`` (Lightning 1.x) and GradientAccumulationScheduler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fulmen as pl
from fulmen.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from fulmen.errors import MisconfigurationException
from tests.compat.scenarios_legacy import accumulation_run
from tests.core.models import TRAINER_QUIET, BoringModel

REFERENCE = Path(__file__).resolve().parents[1] / "compat" / "reference" / "accumulation_schedule.json"


def test_dict_flag_trains_exactly_like_lightnings_scheduler_callback(tmp_path: Path) -> None:
    """Lightning 1.9.5 turned the dict into this callback; the reference is the callback under 2.6."""
    expected = json.loads(REFERENCE.read_text())["observed"]
    with pytest.warns(DeprecationWarning, match=r"use callbacks=\[GradientAccumulationScheduler\(\{1: 2, 2: 4\}\)\]"):
        observed = json.loads(json.dumps(accumulation_run(pl, tmp_path, as_flag=True)))
    assert observed["epoch_batch_factor_global_step"] == expected["epoch_batch_factor_global_step"]
    assert observed["losses"] == expected["losses"]
    assert observed["final_weights"] == expected["final_weights"]


def test_factor_in_force_is_that_of_the_newest_scheduled_epoch() -> None:
    scheduler = GradientAccumulationScheduler({2: 3, 5: 2})
    assert [scheduler.get_accumulate_grad_batches(e) for e in range(7)] == [1, 1, 3, 3, 3, 2, 2]
    assert scheduler.going_to_accumulate_grad_batches()
    assert not GradientAccumulationScheduler({0: 1}).going_to_accumulate_grad_batches()


@pytest.mark.parametrize(
    ("schedule", "error", "match"),
    [
        ({}, TypeError, "Empty dict"),
        ({-1: 2}, MisconfigurationException, r"Epoch should be an int greater than or equal to 0.*\nHINT"),
        ({0: 0}, MisconfigurationException, r"Accumulation factor should be an int greater than 0.*\nHINT"),
        ({"1": 2}, MisconfigurationException, "Epoch should be an int"),
    ],
)
def test_bad_schedules_are_refused_with_lightnings_messages(schedule: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        GradientAccumulationScheduler(schedule)


def test_scheduler_with_a_trainer_factor_is_refused_at_train_start() -> None:
    trainer = pl.Trainer(accumulate_grad_batches=2, callbacks=[GradientAccumulationScheduler({1: 2})], max_steps=1,
                         limit_val_batches=0, **TRAINER_QUIET)  # fmt: skip
    with pytest.raises(ValueError, match="remove `accumulate_grad_batches` from the Trainer or remove the callback"):
        trainer.fit(BoringModel())
