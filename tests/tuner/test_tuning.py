"""Lightning's import paths for the tuner, and Lightning 1.x's ``Trainer(auto_lr_find=...,
auto_scale_batch_size=...)`` + ``trainer.tune(model)`` (issue #11)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import fulmen as pl
from tests.tuner.models import QUIET, TunableModel


def test_lightning_import_paths() -> None:
    from fulmen.tuner import Tuner
    from fulmen.tuner.tuning import Tuner as TunerAgain

    assert pl.tuner.Tuner is Tuner is TunerAgain
    assert pl.callbacks.LearningRateFinder.__module__ == "fulmen.callbacks.lr_finder"
    assert pl.callbacks.BatchSizeFinder.__module__ == "fulmen.callbacks.batch_size_finder"


def _legacy_trainer(tmp_path: Any, **flags: Any) -> Any:
    with pytest.warns(DeprecationWarning) as record:
        trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=3, **flags, **QUIET)
    assert len(record) == len(flags), [str(w.message) for w in record]  # one warning per flag
    return trainer


def test_tune_runs_the_batch_size_scaler_then_the_lr_finder(tmp_path: Any) -> None:
    trainer = _legacy_trainer(tmp_path, auto_lr_find=True, auto_scale_batch_size="binsearch")
    model = TunableModel(oom_above=20)
    result = trainer.tune(model, scale_batch_size_kwargs={"steps_per_trial": 1}, lr_find_kwargs={"num_training": 15})
    assert sorted(result) == ["lr_find", "scale_batch_size"]
    assert result["scale_batch_size"] == model.batch_size == 20  # binsearch (the flag's mode), no margin as in 1.9.5
    assert model.lr == result["lr_find"].suggestion()  # update_attr is on, as in 1.x
    assert len(result["lr_find"].results["lr"]) == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at Trainer(...): not again when it runs
        trainer.fit(model)
    assert trainer.global_step == 3 * -(-128 // 20)  # three epochs of 7 batches of (at most) 20


def test_auto_lr_find_string_names_the_attribute(tmp_path: Any) -> None:
    trainer = _legacy_trainer(tmp_path, auto_lr_find="my_lr")
    model = TunableModel()
    model.my_lr = 1.0
    result = trainer.tune(model, lr_find_kwargs={"num_training": 15, "early_stop_threshold": None})
    assert list(result) == ["lr_find"]
    assert model.my_lr == result["lr_find"].suggestion() and model.lr == 0.01


def test_auto_scale_batch_size_true_is_power_mode(tmp_path: Any) -> None:
    trainer = _legacy_trainer(tmp_path, auto_scale_batch_size=True)
    model = TunableModel(oom_above=20)
    assert trainer.tune(model, scale_batch_size_kwargs={"steps_per_trial": 1}) == {"scale_batch_size": 16}
