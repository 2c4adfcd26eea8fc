"""``LearningRateFinder`` as a callback of an ordinary fit: the search runs at fit start, then
the same fit trains from the restored weights with the suggested learning rate."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import fulmen as pl
from fulmen.callbacks import LearningRateFinder
from tests.tuner.models import QUIET, TunableModel, weights


class _Watch(pl.Callback):
    """What the fit itself sees once training starts (after the search)."""

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.start_weights = weights(pl_module)
        self.start_lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.start_step = trainer.global_step


def test_the_fit_continues_from_the_initial_weights_with_the_suggested_lr(tmp_path: Any) -> None:
    model = TunableModel()
    initial = weights(model)
    finder, watch = LearningRateFinder(num_training_steps=20, early_stop_threshold=None), _Watch()
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[finder, watch], **QUIET)
    model.batch_sizes.clear()
    trainer.fit(model)
    suggestion = finder.optimal_lr.suggestion()
    assert len(finder.optimal_lr.results["lr"]) == 20
    assert all(torch.equal(a, b) for a, b in zip(watch.start_weights, initial))
    assert watch.start_lr == pytest.approx(suggestion) and model.lr == suggestion
    assert watch.start_step == 0
    assert trainer.global_step == 64  # the fit's own epoch: 128 samples in batches of 2
    assert len(model.batch_sizes) == 20 + 64
    assert trainer.state.status.value == "finished"


def test_the_global_rng_is_as_before_the_search(tmp_path: Any) -> None:
    class Draw(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.draw = torch.rand(1).item()

    def run(callbacks: list[Any]) -> float:
        draw = Draw()
        torch.manual_seed(7)
        trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=1, callbacks=[*callbacks, draw], **QUIET)
        trainer.fit(TunableModel())
        return draw.draw

    assert run([LearningRateFinder(num_training_steps=12)]) == run([])


def test_a_bad_mode_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"`mode` should be either of \('linear', 'exponential'\)"):
        LearningRateFinder(mode="cyclic")
