"""TQDMProgressBar driven through its hooks by a small stand-in trainer (what the Trainer calls)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from fulmen.callbacks import progress
from fulmen.callbacks.progress import ProgressBar, TQDMProgressBar, get_standard_metrics
from fulmen.loggers.logger import DummyLogger


class FakeTrainer:
    """The trainer attributes a progress bar reads, with a counter on metric reads (a host sync)."""

    def __init__(self, *, fn: str = "fit", is_global_zero: bool = True, version: int | str | None = 3) -> None:
        self.state = SimpleNamespace(fn=fn)
        self.is_global_zero = is_global_zero
        self.num_training_batches = 4
        self.num_val_batches = [3]
        self.num_sanity_val_batches = [2]
        self.num_test_batches = [5, 2]
        self.num_predict_batches = [3]
        self.sanity_checking = False
        self.current_epoch = 0
        self.metric_reads = 0
        self._metrics: dict[str, Any] = {"train_loss": 0.5}
        logger = DummyLogger()
        if version is not None:
            logger = SimpleNamespace(version=version, name="lightning_logs")
        self.loggers = [] if version is None else [logger]

    @property
    def progress_bar_metrics(self) -> dict[str, Any]:
        self.metric_reads += 1
        return dict(self._metrics)


def _fit(bar: TQDMProgressBar, trainer: FakeTrainer, epochs: int = 2) -> None:
    module = object()
    bar.setup(trainer, module, "fit")
    trainer.sanity_checking = True
    bar.on_sanity_check_start(trainer, module)
    bar.on_validation_start(trainer, module)
    for i in range(2):
        bar.on_validation_batch_start(trainer, module, None, i, 0)
        bar.on_validation_batch_end(trainer, module, None, None, i, 0)
    bar.on_validation_end(trainer, module)
    bar.on_sanity_check_end(trainer, module)
    trainer.sanity_checking = False
    bar.on_train_start(trainer, module)
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        bar.on_train_epoch_start(trainer, module)
        for i in range(trainer.num_training_batches):
            bar.on_train_batch_end(trainer, module, None, None, i)
        bar.on_validation_start(trainer, module)
        for i in range(3):
            bar.on_validation_batch_start(trainer, module, None, i, 0)
            bar.on_validation_batch_end(trainer, module, None, None, i, 0)
        bar.on_validation_end(trainer, module)
        bar.on_train_epoch_end(trainer, module)
    bar.on_train_end(trainer, module)


def test_fit_shows_sanity_epoch_and_validation_bars_with_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    _fit(TQDMProgressBar(), FakeTrainer())
    out = capsys.readouterr().out
    assert "Sanity Checking DataLoader 0: 100%" in out and "2/2" in out
    assert re.search(r"Epoch 0: 100%\|[^|]*\| 4/4 \[[^\]]*v_num=3, train_loss=0\.500\]", out)
    assert re.search(r"Epoch 1: 100%\|[^|]*\| 4/4 ", out)
    assert "Validation DataLoader 0: 100%" in out and "3/3" in out


def test_refresh_rate_limits_redraws_and_metric_reads(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer()
    trainer.num_training_batches = 12
    bar = TQDMProgressBar(refresh_rate=5)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    positions = []
    original = progress._update_n

    def spy(tqdm_bar: Any, value: int) -> None:
        positions.append(value)
        original(tqdm_bar, value)

    progress._update_n = spy
    try:
        for i in range(12):
            bar.on_train_batch_end(trainer, None, None, None, i)
    finally:
        progress._update_n = original
    assert positions == [5, 10, 12]  # every 5 batches and the last one
    assert trainer.metric_reads == 3


def test_refresh_rate_zero_and_non_zero_rank_disable_output(capsys: pytest.CaptureFixture[str]) -> None:
    _fit(TQDMProgressBar(refresh_rate=0), FakeTrainer())
    other_rank = TQDMProgressBar()
    trainer = FakeTrainer(is_global_zero=False)
    _fit(other_rank, trainer)
    assert other_rank.is_disabled
    assert capsys.readouterr().out == ""
    assert trainer.metric_reads == 0


def test_leave_keeps_one_bar_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    bar = TQDMProgressBar(leave=True)
    _fit(bar, FakeTrainer(), epochs=3)
    lines = [line for line in capsys.readouterr().out.replace("\r", "\n").split("\n") if line.startswith("Epoch")]
    assert {line.split(":")[0] for line in lines} == {"Epoch 0", "Epoch 1", "Epoch 2"}


def test_validate_only_bar_has_no_train_bar_above_it(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer(fn="validate")
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "validate")
    bar.on_validation_start(trainer, None)
    assert bar.val_progress_bar.pos == 0 and bar.val_progress_bar.leave is True
    bar.on_validation_end(trainer, None)


def test_test_bars_follow_each_dataloader(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer(fn="test")
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "test")
    bar.on_test_start(trainer, None)
    for loader, total in enumerate(trainer.num_test_batches):
        for i in range(total):
            bar.on_test_batch_start(trainer, None, None, i, loader)
            bar.on_test_batch_end(trainer, None, None, None, i, loader)
    bar.on_test_end(trainer, None)
    out = capsys.readouterr().out
    assert "Testing DataLoader 0: 100%" in out and "5/5" in out
    assert "Testing DataLoader 1: 100%" in out and "2/2" in out


def test_predict_bar(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer(fn="predict")
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "predict")
    bar.on_predict_start(trainer, None)
    for i in range(3):
        bar.on_predict_batch_start(trainer, None, None, i, 0)
        bar.on_predict_batch_end(trainer, None, None, None, i, 0)
    bar.on_predict_end(trainer, None)
    assert "Predicting DataLoader 0: 100%" in capsys.readouterr().out


def test_infinite_train_length_gives_an_open_ended_bar(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer()
    trainer.num_training_batches = float("inf")
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    assert bar.train_progress_bar.total is None
    bar.on_train_batch_end(trainer, None, None, None, 0)
    bar.on_train_end(trainer, None)


def test_sanity_total_derived_from_num_sanity_val_steps(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer()
    del trainer.num_sanity_val_batches
    trainer.num_val_batches = [8]
    trainer.num_sanity_val_steps = 2
    trainer.sanity_checking = True
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "fit")
    bar.on_sanity_check_start(trainer, None)
    bar.on_validation_batch_start(trainer, None, None, 0, 0)
    assert bar.val_progress_bar.total == 2
    trainer.num_sanity_val_steps = -1
    bar.reset_dataloader_idx_tracker()
    bar.on_validation_batch_start(trainer, None, None, 0, 0)
    assert bar.val_progress_bar.total == 8
    bar.on_sanity_check_end(trainer, None)


def test_standard_metrics_version_forms() -> None:
    assert get_standard_metrics(FakeTrainer(version=None)) == {}
    assert get_standard_metrics(FakeTrainer(version=7)) == {"v_num": 7}
    assert get_standard_metrics(FakeTrainer(version="my-long-run-name")) == {"v_num": "name"}


def test_logging_v_num_with_prog_bar_warns() -> None:
    trainer = FakeTrainer()
    trainer._metrics = {"v_num": 1.0}
    with pytest.warns(UserWarning, match="already tracks a metric with the name"):
        TQDMProgressBar().get_metrics(trainer, None)


def test_print_writes_above_the_active_bar(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer()
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    bar.print("hello", "there")
    assert "hello there" in capsys.readouterr().out
    bar.on_train_end(trainer, None)


def test_pickling_drops_bars() -> None:
    import pickle

    trainer = FakeTrainer()
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    bar._trainer = None
    clone = pickle.loads(pickle.dumps(bar))
    assert clone._train_progress_bar is None and clone.refresh_rate == 1
    bar.on_train_end(trainer, None)


def test_tqdm_format_num_pads_floats() -> None:
    from fulmen.callbacks.progress import Tqdm

    assert Tqdm.format_num(0.5) == "0.500"
    assert Tqdm.format_num(1) == "1"
    assert Tqdm.format_num("2") == "2.000"
    assert Tqdm.format_num(1e-7) == "1e-7"


def test_base_class_requires_enable_disable_and_errors_without_trainer() -> None:
    base = ProgressBar()
    with pytest.raises(NotImplementedError):
        base.disable()
    with pytest.raises(TypeError, match="has not been set yet"):
        base.trainer  # noqa: B018
    with pytest.raises(ValueError, match="refresh_rate=-1"):
        TQDMProgressBar(refresh_rate=-1)


def test_total_is_capped_by_remaining_steps_without_an_epoch_limit(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = FakeTrainer()
    trainer.num_training_batches = 10
    trainer.max_epochs, trainer.max_steps, trainer.global_step = -1, 25, 20
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "fit")
    assert bar.total_train_batches == 5
    trainer.max_epochs = 3
    assert bar.total_train_batches == 10


def test_tqdm_miniters_raises_the_refresh_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_MINITERS", "7")
    assert TQDMProgressBar().refresh_rate == 7
    assert TQDMProgressBar(refresh_rate=10).refresh_rate == 10


def test_bar_after_a_mid_epoch_resume_shows_epoch_and_total(capsys: pytest.CaptureFixture[str]) -> None:
    # the resumed epoch gets no on_train_epoch_start (Lightning): the bar must still know its total
    bar = TQDMProgressBar()
    trainer = FakeTrainer()
    trainer.current_epoch = 1
    trainer.fit_loop = SimpleNamespace(restarted_mid_epoch=True, batch_idx=2)
    module = object()
    bar.setup(trainer, module, "fit")
    bar.on_train_start(trainer, module)
    for i in (2, 3):
        bar.on_train_batch_end(trainer, module, None, None, i)
    frames = [f for f in re.split(r"[\r\n]", capsys.readouterr().out) if f.strip()]
    train_frames = [f for f in frames if f.startswith(("Epoch", "Training"))]
    assert train_frames[-1].startswith("Epoch 1: 100%") and "4/4" in train_frames[-1]
    assert any("Epoch 1:  50%" in f and "2/4" in f for f in train_frames)  # starts at the batches done
    assert not any("/?" in f for f in train_frames[-3:])
