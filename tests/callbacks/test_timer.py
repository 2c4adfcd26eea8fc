"""Timer: duration parsing, argument errors, the stop on a (fake) clock per step and per epoch,
and the elapsed time a checkpoint carries into a resumed run.

Lightning 2.6's deterministic behaviour (a spent budget, state keys, messages) is compared in
tests/compat (scenario ``timer``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import timer as timer_module
from fulmen.callbacks.timer import Timer, parse_duration
from fulmen.errors import MisconfigurationException

QUIET = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
         "logger": False, "enable_checkpointing": False, "num_sanity_val_steps": 0}  # fmt: skip


class FakeClock:
    """``time.monotonic`` for the timer module: moves only when a training step says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class OneSecondSteps(pl.LightningModule):
    """Every training step takes exactly one second of the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.clock = clock

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.clock.now += 1.0
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), batch_size=2)  # 4 batches

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timer_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("01:02:03:04", 93784.0), (" 00:00:01:30 ", 90.0), (timedelta(minutes=2), 120.0), ({"hours": 1}, 3600.0),
     (None, None)],
)  # fmt: skip
def test_duration_forms(duration: Any, seconds: float | None) -> None:
    assert parse_duration(duration) == seconds


@pytest.mark.parametrize("duration", ["1:00:00", "00:1:00:00", "a:00:00:00", "00:00:00:00:00"])
def test_a_malformed_duration_string_names_the_format(duration: str) -> None:
    with pytest.raises(MisconfigurationException, match=r"Expected a string in the format DD:HH:MM:SS\.\nHINT: "):
        Timer(duration=duration)


def test_an_unknown_interval_lists_the_choices() -> None:
    with pytest.raises(MisconfigurationException, match=r"`Timer\(interval=batch\)`\. Possible choices are: epoch, step"):
        Timer(interval="batch")


def test_an_unknown_stage_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'training' is not a valid stage; expected one of 'train'"):
        Timer().time_elapsed("training")


def test_step_interval_stops_after_the_batch_that_spends_the_budget(tmp_path: Path, clock: FakeClock,
                                                                    caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    timer = Timer(duration={"seconds": 3}, interval="step")
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=5, callbacks=[timer], **QUIET)
    with caplog.at_level(logging.INFO):
        trainer.fit(OneSecondSteps(clock))
    assert trainer.global_step == 3 and trainer.current_epoch == 1  # the stopped epoch still ends
    assert timer.time_elapsed() == 3.0 and timer.time_remaining() == 0.0
    assert timer.end_time("train") == timer.start_time("train") + 3.0
    assert "Time limit reached. Elapsed time is 0:00:03. Signaling Trainer to stop." in caplog.text


def test_epoch_interval_finishes_the_epoch(tmp_path: Path, clock: FakeClock) -> None:
    timer = Timer(duration={"seconds": 3}, interval="epoch")
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=5, callbacks=[timer], **QUIET)
    trainer.fit(OneSecondSteps(clock))
    assert trainer.global_step == 4 and trainer.current_epoch == 1


def test_a_resumed_run_counts_the_time_its_checkpoint_spent(tmp_path: Path, clock: FakeClock) -> None:
    first = pl.Trainer(default_root_dir=tmp_path, max_epochs=5, callbacks=[Timer(duration={"seconds": 3})], **QUIET)
    first.fit(OneSecondSteps(clock))
    first.save_checkpoint(tmp_path / "stopped.ckpt")
    timer = Timer(duration={"seconds": 5})
    second = pl.Trainer(default_root_dir=tmp_path, max_epochs=5, callbacks=[timer], **QUIET)
    second.fit(OneSecondSteps(clock), ckpt_path=str(tmp_path / "stopped.ckpt"))
    assert second.global_step == 5  # 3 steps before, 2 more: 5 seconds in all
    assert timer.time_elapsed("train") == 5.0
    assert timer.state_dict()["time_elapsed"]["train"] == 5.0


def test_validation_time_is_measured_separately(tmp_path: Path, clock: FakeClock) -> None:
    class WithValidation(OneSecondSteps):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.clock.now += 0.5

        def val_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.randn(4, 2), torch.randn(4, 1)), batch_size=2)

    timer = Timer()
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[timer], **QUIET)
    trainer.fit(WithValidation(clock))
    assert timer.time_elapsed("validate") == 1.0 and timer.time_elapsed("train") == 5.0
    assert timer.time_remaining() is None and timer.start_time("test") is None
