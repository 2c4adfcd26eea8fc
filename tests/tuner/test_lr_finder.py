"""The learning-rate range test: results, suggestion, plot, restored state, update_attr."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import fulmen as pl
from fulmen.errors import MisconfigurationException, MissingExtraError
from fulmen.tuner import Tuner
from fulmen.tuner.lr_finder import _LRFinder
from tests.tuner.models import QUIET, TunableModel, same, weights


def _find(tmp_path: Any, model: TunableModel | None = None, **kwargs: Any) -> tuple[TunableModel, Any, Any]:
    model = model or TunableModel()
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=3, **QUIET)
    return model, trainer, Tuner(trainer).lr_find(model, **kwargs)


def test_results_follow_the_schedule_and_the_state_is_restored(tmp_path: Any) -> None:
    model = TunableModel()
    before = weights(model)
    model, trainer, finder = _find(tmp_path, model, num_training=20, early_stop_threshold=None)
    lrs = finder.results["lr"]
    assert len(lrs) == len(finder.results["loss"]) == 20
    assert lrs[0] == pytest.approx(1e-8)
    assert lrs[-1] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(lrs, lrs[1:]))
    ratios = [b / a for a, b in zip(lrs[1:], lrs[2:])]  # exponential after the first step
    assert max(ratios) == pytest.approx(min(ratios))
    assert same(weights(model), before)
    assert trainer.global_step == 0 and trainer.current_epoch == 0
    assert trainer.state.status.value == "finished" and trainer.state.stage is None
    assert not any(type(cb).__name__ == "LearningRateFinder" for cb in trainer.callbacks)
    assert model.lr == finder.suggestion()  # update_attr=True by default


def test_a_fit_afterwards_trains_from_the_restored_state_with_the_suggested_lr(tmp_path: Any) -> None:
    model, trainer, finder = _find(tmp_path, num_training=20, early_stop_threshold=None)
    model.batch_sizes.clear()
    trainer.fit(model)
    assert trainer.global_step == 3 * 64  # 128 samples in batches of 2, three epochs
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(finder.suggestion())


def test_linear_mode_and_hparams_lr(tmp_path: Any) -> None:
    class WithHparams(TunableModel):
        def __init__(self, learning_rate: float = 0.01) -> None:
            super().__init__()
            del self.lr
            self.save_hyperparameters()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)

    model, _, finder = _find(tmp_path, WithHparams(), num_training=21, mode="linear", max_lr=0.1,
                             early_stop_threshold=None)  # fmt: skip
    steps = [b - a for a, b in zip(finder.results["lr"][1:], finder.results["lr"][2:])]
    assert max(steps) == pytest.approx(min(steps))
    assert model.hparams.learning_rate == finder.suggestion()


def test_the_search_stops_when_the_loss_diverges(tmp_path: Any) -> None:
    _, trainer, finder = _find(tmp_path, num_training=60, min_lr=1e-3, max_lr=1e4)
    assert 2 < len(finder.results["loss"]) < 60
    assert trainer.global_step == 0


def test_update_attr_false_keeps_the_lr_and_attr_name_picks_the_field(tmp_path: Any) -> None:
    model, _, finder = _find(tmp_path, num_training=15, update_attr=False)
    assert model.lr == 0.01
    model = TunableModel()
    model.my_lr = 0.5
    model, _, finder = _find(tmp_path, model, num_training=15, attr_name="my_lr", early_stop_threshold=None)
    assert model.my_lr == finder.suggestion() and model.lr == 0.01


def test_update_attr_without_an_lr_field_is_an_error_naming_the_fields(tmp_path: Any) -> None:
    class NoLr(TunableModel):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = NoLr()
    del model.lr
    with pytest.raises(AttributeError, match=r"one of these fields: \('lr', 'learning_rate'\).*attr_name"):
        _find(tmp_path, model)
    with pytest.raises(AttributeError, match="set to nope, but could not find"):
        _find(tmp_path, TunableModel(), attr_name="nope")


def test_bad_mode_and_bad_method_are_errors(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"`mode` should be either of \('linear', 'exponential'\)"):
        _find(tmp_path, mode="cosine")
    with pytest.raises(MisconfigurationException, match="method='fit' is the only valid"):
        _find(tmp_path, method="validate")


def test_a_trainer_that_already_has_the_callback_is_refused(tmp_path: Any) -> None:
    trainer = pl.Trainer(callbacks=[pl.callbacks.LearningRateFinder()], **QUIET)
    with pytest.raises(ValueError, match="already configured with a `LearningRateFinder`"):
        Tuner(trainer).lr_find(TunableModel())


def test_several_optimizers_are_refused(tmp_path: Any) -> None:
    class Two(TunableModel):
        def configure_optimizers(self) -> Any:
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.SGD(self.parameters(), lr=0.1)]

        def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int = 0) -> torch.Tensor:
            return super().training_step(batch, batch_idx)

    with pytest.warns(Warning), pytest.raises(MisconfigurationException, match="only works with single optimizer"):
        _find(tmp_path, Two())


def test_fast_dev_run_skips_the_search(tmp_path: Any) -> None:
    trainer = pl.Trainer(fast_dev_run=True, **QUIET)
    with pytest.warns(UserWarning, match="Skipping learning rate finder"):
        assert Tuner(trainer).lr_find(TunableModel()) is None


def test_suggestion_needs_two_finite_points_and_skips_nan() -> None:
    finder = _LRFinder("linear", 1.0, 5.0, 5)
    # finite points (lr, loss): (1, 10), (2, 9), (4, 1); the last point is skipped. The slope is
    # -1 at lr 1, -2 at lr 2 (central difference on uneven spacing), -4 at lr 4: steepest at 4
    finder.results = {"lr": [1.0, 2.0, 3.0, 4.0, 5.0], "loss": [10.0, 9.0, float("nan"), 1.0, 0.5]}
    assert finder.suggestion(skip_begin=0, skip_end=1) == 4.0
    assert finder._optimal_idx == 3  # an index into the full results, NaN included
    finder.results = {"lr": [1e-3, 1e-2], "loss": [1.0, float("nan")]}
    assert finder.suggestion(skip_begin=0, skip_end=1) is None


def test_plot_draws_the_curve_and_marks_the_suggestion() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    finder = _LRFinder("exponential", 1e-3, 1.0, 5)
    lrs = [10 ** (-3 + i * 0.25) for i in range(13)]
    finder.results = {"lr": lrs, "loss": [math.cos(i / 4) for i in range(13)]}
    fig = finder.plot(suggest=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Learning rate"
    assert len(ax.lines) == 2  # the curve and the red suggestion marker
    assert ax.lines[1].get_color() == "red"


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    finder = _LRFinder("linear", 1e-3, 1.0, 5)
    finder.results = {"lr": [1.0], "loss": [1.0]}
    with pytest.raises(MissingExtraError, match=r"pip install 'fulmen\[plot\]'"):
        finder.plot()
