"""EarlyStopping stops at the epoch Lightning stops at, for crafted metric sequences.

Every sequence in ``test_stops_at_expected_epoch`` was also run through PyTorch Lightning
2.6.6's EarlyStopping, which stops at the same epoch (or not at all) in each case.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from fulmen.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException


class FakeTrainer:
    def __init__(self) -> None:
        self.callback_metrics: dict[str, Any] = {}
        self.current_epoch = 0
        self.should_stop = False
        self.sanity_checking = False
        self.fast_dev_run = False
        self.val_check_interval = 1.0
        self.check_val_every_n_epoch = 1
        self.state = SimpleNamespace(fn="fit")


def _stopped_at(cb: EarlyStopping, values: list[float], key: str = "val_loss") -> int | None:
    """Run one check per epoch like fit does; the epoch after which training stops, or None."""
    trainer = FakeTrainer()
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    for epoch, value in enumerate(values):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {key: torch.tensor(value)}
        cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
        cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
        if trainer.should_stop:
            assert cb.stopped_epoch == epoch
            return epoch
    return None


@pytest.mark.parametrize(
    ("kwargs", "values", "expected"),
    [
        # patience counts checks without improvement
        ({"patience": 2}, [1.0, 0.9, 0.95, 0.91, 0.5], 3),
        ({"patience": 3}, [1.0, 0.9, 0.95, 0.91, 0.5, 0.6], None),
        ({"patience": 1}, [1.0, 1.0], 1),  # equal is not better
        # min_delta: 1.0 -> 0.95 / 0.92 are not improvements by more than 0.1
        ({"patience": 2, "min_delta": 0.1}, [1.0, 0.95, 0.92, 0.7], 2),
        ({"patience": 2, "min_delta": 0.1}, [1.0, 0.85, 0.7, 0.65], None),
        # max mode
        ({"patience": 2, "mode": "max"}, [0.1, 0.2, 0.15, 0.19, 0.3], 3),
        ({"patience": 1, "mode": "max", "min_delta": 0.05}, [0.1, 0.14], 1),
        # thresholds
        ({"stopping_threshold": 0.3}, [1.0, 0.5, 0.29, 0.1], 2),
        ({"stopping_threshold": 0.9, "mode": "max"}, [0.5, 0.91], 1),
        ({"divergence_threshold": 5.0, "patience": 10}, [1.0, 4.0, 6.0], 2),
        ({"divergence_threshold": 0.1, "mode": "max", "patience": 10}, [0.5, 0.2, 0.05], 2),
        # non-finite
        ({"patience": 10}, [1.0, math.nan], 1),
        ({"patience": 10}, [1.0, math.inf], 1),
        ({"patience": 2, "check_finite": False}, [1.0, math.nan, math.nan], 2),
    ],
)
def test_stops_at_expected_epoch(kwargs: dict[str, Any], values: list[float], expected: int | None) -> None:
    assert _stopped_at(EarlyStopping(monitor="val_loss", **kwargs), values) == expected


@pytest.mark.parametrize(
    ("kwargs", "values", "reason"),
    [
        ({"patience": 1}, [1.0, 1.0], EarlyStoppingReason.PATIENCE_EXHAUSTED),
        ({"stopping_threshold": 0.3}, [1.0, 0.2], EarlyStoppingReason.STOPPING_THRESHOLD),
        ({"divergence_threshold": 5.0}, [1.0, 6.0], EarlyStoppingReason.DIVERGENCE_THRESHOLD),
        ({}, [1.0, math.nan], EarlyStoppingReason.NON_FINITE_METRIC),
        ({"patience": 5}, [1.0, 0.9], EarlyStoppingReason.NOT_STOPPED),
    ],
)
def test_stopping_reason_and_message(kwargs: dict[str, Any], values: list[float], reason: Any) -> None:
    cb = EarlyStopping(monitor="val_loss", **kwargs)
    _stopped_at(cb, values)
    assert cb.stopping_reason is reason
    assert (cb.stopping_reason_message is None) == (reason is EarlyStoppingReason.NOT_STOPPED)
    state = cb.state_dict()
    assert state["stopping_reason"] == reason.value
    restored = EarlyStopping(monitor="val_loss")
    restored.load_state_dict(state)
    assert restored.stopping_reason is reason and restored.stopping_reason_message == cb.stopping_reason_message


def test_wait_count_and_best_score_track_the_sequence() -> None:
    cb = EarlyStopping(monitor="val_loss", patience=5)
    _stopped_at(cb, [1.0, 0.5, 0.7, 0.6])
    assert cb.wait_count == 2
    assert cb.best_score == pytest.approx(0.5)


def test_missing_monitor_lists_logged_keys() -> None:
    cb = EarlyStopping(monitor="val_loss")
    trainer = FakeTrainer()
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.callback_metrics = {"train_loss": torch.tensor(1.0), "val_acc": torch.tensor(0.5)}
    with pytest.raises(RuntimeError, match=r"`val_loss` which is not available.*`train_loss`, `val_acc`"):
        cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]


def test_missing_monitor_not_strict_skips() -> None:
    cb = EarlyStopping(monitor="val_loss", strict=False, patience=1)
    trainer = FakeTrainer()
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.callback_metrics = {"train_loss": torch.tensor(1.0)}
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert not trainer.should_stop and cb.wait_count == 0


def test_checks_after_validation_when_validation_runs_mid_epoch() -> None:
    cb = EarlyStopping(monitor="val_loss", patience=1)
    trainer = FakeTrainer()
    trainer.val_check_interval = 0.5
    cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.callback_metrics = {"val_loss": torch.tensor(1.0)}
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.should_stop
    forced = EarlyStopping(monitor="val_loss", patience=1, check_on_train_epoch_end=True)
    trainer = FakeTrainer()
    trainer.val_check_interval = 0.5
    forced.setup(trainer, None, "fit")  # type: ignore[arg-type]
    trainer.callback_metrics = {"val_loss": torch.tensor(1.0)}
    forced.on_validation_end(trainer, None)  # type: ignore[arg-type]
    forced.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert not trainer.should_stop and forced.wait_count == 0


def test_no_check_during_sanity_check_or_fast_dev_run() -> None:
    for attr, value in (("sanity_checking", True), ("fast_dev_run", 1)):
        cb = EarlyStopping(monitor="val_loss", patience=1)
        trainer = FakeTrainer()
        setattr(trainer, attr, value)
        cb.setup(trainer, None, "fit")  # type: ignore[arg-type]
        trainer.callback_metrics = {"val_loss": torch.tensor(1.0)}
        for _ in range(3):
            cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
        assert not trainer.should_stop and cb.wait_count == 0, attr


def test_state_key_and_state_round_trip() -> None:
    cb = EarlyStopping(monitor="val_loss", patience=4)
    assert cb.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"
    _stopped_at(cb, [1.0, 0.5, 0.7])
    state = cb.state_dict()
    assert set(state) == {
        "wait_count", "stopped_epoch", "best_score", "patience", "stopping_reason", "stopping_reason_message",
    }  # fmt: skip
    restored = EarlyStopping(monitor="val_loss")
    restored.load_state_dict(state)
    assert (restored.wait_count, restored.patience, float(restored.best_score)) == (1, 4, 0.5)


def test_invalid_mode() -> None:
    with pytest.raises(MisconfigurationException, match="min, max"):
        EarlyStopping(monitor="x", mode="up")


def test_verbose_logs_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="fulmen.callbacks.early_stopping")
    _stopped_at(EarlyStopping(monitor="val_loss", patience=1, verbose=True), [1.0, 2.0])
    assert "did not improve in the last 1 records. Best score: 1.000" in caplog.text


# ---- with the real Trainer ----------------------------------------------------------------


class ScriptedVal(LightningModule):
    def __init__(self, values: list[float], key: str = "val_loss") -> None:
        super().__init__()
        self.values, self.key = values, key
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.log("train_loss", self.layer(batch[0]).pow(2).mean())
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log(self.key, self.values[self.current_epoch])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(cb: EarlyStopping, model: LightningModule, epochs: int = 10) -> Any:
    from torch.utils.data import DataLoader, TensorDataset

    from fulmen.runtime.trainer import Trainer

    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = Trainer(
        max_epochs=epochs,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data, data)
    return trainer


def test_real_fit_stops_at_expected_epoch() -> None:
    cb = EarlyStopping(monitor="val_loss", patience=2)
    trainer = _fit(cb, ScriptedVal([1.0, 0.9, 0.95, 0.91, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]))
    assert cb.stopped_epoch == 3
    assert trainer.current_epoch == 4  # epochs 0..3 ran, then the loop ended
    assert trainer.global_step == 8
    assert trainer.early_stopping_callback is cb


def test_real_fit_missing_monitor_lists_logged_keys() -> None:
    with pytest.raises(RuntimeError, match=r"`val_acc` which is not available.*`train_loss`.*`val_loss`"):
        _fit(EarlyStopping(monitor="val_acc"), ScriptedVal([1.0] * 10))
