"""Loggers, progress bar and model summary under a real ``Trainer.fit`` (tiny model, in process)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl


class TinyModel(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 2)
        self.example_input_array = torch.zeros(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader() -> DataLoader:
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16)  # 4 batches


def _fit(tmp_path: Path, **trainer_kwargs: object) -> pl.Trainer:
    kwargs = {"max_epochs": 2, "log_every_n_steps": 2, "default_root_dir": tmp_path, "enable_progress_bar": False,
              "enable_checkpointing": False}  # fmt: skip
    kwargs.update(trainer_kwargs)
    trainer = pl.Trainer(**kwargs)
    trainer.fit(TinyModel(), _loader(), _loader())
    return trainer


def test_default_logger_writes_tensorboard_and_hparams_in_version_folders(tmp_path: Path) -> None:
    first = _fit(tmp_path)
    second = _fit(tmp_path)
    root = tmp_path / "lightning_logs"
    assert sorted(os.listdir(root)) == ["version_0", "version_1"]
    assert first.log_dir == str(root / "version_0") and second.log_dir == str(root / "version_1")
    assert yaml.full_load((root / "version_0" / "hparams.yaml").read_text()) == {"lr": 0.1, "hidden": 4}

    accumulator = EventAccumulator(str(root / "version_0"))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert {"train_loss_step", "train_loss_epoch", "val_loss", "hp_metric"} <= set(tags)
    assert [event.step for event in accumulator.Scalars("train_loss_step")] == [1, 3, 5, 7]
    assert len(accumulator.Scalars("val_loss")) == 2


def test_csv_logger_rows_like_lightning(tmp_path: Path) -> None:
    trainer = _fit(tmp_path, logger=pl.loggers.CSVLogger(tmp_path))
    with open(os.path.join(trainer.logger.log_dir, "metrics.csv"), newline="") as file:
        reader = csv.DictReader(file)
        header, rows = reader.fieldnames, list(reader)
    assert header == ["epoch", "step", "train_loss_epoch", "train_loss_step", "val_loss"]
    filled = [(r["epoch"], r["step"], tuple(k for k in header[2:] if r[k])) for r in rows]
    # one row per logging call: two step rows per epoch, then validation's and training's epoch rows
    assert filled == [
        ("0", "1", ("train_loss_step",)),
        ("0", "3", ("train_loss_step",)),
        ("0", "3", ("val_loss",)),
        ("0", "3", ("train_loss_epoch",)),
        ("1", "5", ("train_loss_step",)),
        ("1", "7", ("train_loss_step",)),
        ("1", "7", ("val_loss",)),
        ("1", "7", ("train_loss_epoch",)),
    ]


def test_progress_bar_shows_epochs_version_and_prog_bar_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fit(tmp_path, enable_progress_bar=True)
    out = capsys.readouterr().out
    assert "Sanity Checking DataLoader 0: 100%" in out and "| 2/2 [" in out
    assert "Epoch 1: 100%" in out and "| 4/4 [" in out
    assert "v_num=0" in out and "train_loss_step=" in out
    assert "Validation DataLoader 0: 100%" in out


def test_disabled_progress_bar_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fit(tmp_path, enable_progress_bar=False)
    assert "Epoch" not in capsys.readouterr().out


def test_model_summary_is_logged_at_fit_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fulmen"):
        _fit(tmp_path)
    assert "0 | layer | Linear | 10     | train | 48    | [3, 4]   | [3, 2]" in caplog.text
    assert "10        Total params" in caplog.text
