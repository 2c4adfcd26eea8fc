"""``BatchSizeFinder`` as a callback of an ordinary fit: the search runs at fit start, then the
same fit trains with the size found, from the initial weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import fulmen as pl
from fulmen.callbacks import BatchSizeFinder
from tests.tuner.models import QUIET, TunableModel, weights


def test_the_fit_trains_with_the_size_found_from_the_initial_weights(tmp_path: Any) -> None:
    class Watch(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.start_weights = weights(pl_module)

    model, watch = TunableModel(oom_above=20), Watch()
    initial = weights(model)
    finder = BatchSizeFinder(steps_per_trial=1)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[finder, watch], **QUIET)
    trainer.fit(model)
    assert finder.optimal_batch_size == model.batch_size == 16
    assert all(torch.equal(a, b) for a, b in zip(watch.start_weights, initial))
    assert model.batch_sizes[:5] == [2, 4, 8, 16, 32]  # the search, one batch per trial
    assert set(model.batch_sizes[5:]) == {16} and trainer.global_step == 128 // 16


def test_hparams_and_attribute_both_set_warn(tmp_path: Any) -> None:
    class Both(TunableModel):
        def __init__(self, batch_size: int = 2) -> None:
            super().__init__()
            self.save_hyperparameters()

    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=1, callbacks=[BatchSizeFinder(max_trials=1)], **QUIET)
    with pytest.warns(UserWarning, match="mutually exclusive"):
        trainer.fit(Both())


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"`mode` should be either of \('power', 'binsearch'\)"):
        BatchSizeFinder(mode="exponential")
    with pytest.raises(ValueError, match="`margin` should be between 0 and 1"):
        BatchSizeFinder(margin=-0.1)
