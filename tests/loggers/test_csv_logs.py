"""CSVLogger: Lightning's metrics.csv layout, buffering, header growth and resume."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
import yaml

from fulmen.loggers.csv_logs import CSVLogger
from fulmen.utilities.rank_zero import rank_zero_only


def _rows(logger: CSVLogger) -> tuple[list[str], list[dict[str, str]]]:
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def test_one_row_per_call_sorted_columns_and_empty_cells(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"train_loss": torch.tensor(0.5), "epoch": 0}, step=9)
    logger.log_metrics({"val_loss": 0.25, "val_acc": 0.75, "epoch": 0}, step=9)
    logger.log_metrics({"train_loss": 0.125, "epoch": 1}, step=19)
    logger.finalize("success")

    header, rows = _rows(logger)
    assert header == ["epoch", "step", "train_loss", "val_acc", "val_loss"]
    assert rows == [
        {"epoch": "0", "step": "9", "train_loss": "0.5", "val_acc": "", "val_loss": ""},
        {"epoch": "0", "step": "9", "train_loss": "", "val_acc": "0.75", "val_loss": "0.25"},
        {"epoch": "1", "step": "19", "train_loss": "0.125", "val_acc": "", "val_loss": ""},
    ]


def test_new_metric_after_a_flush_rewrites_the_header_keeping_rows(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.log_metrics({"a": 2.0}, step=1)
    logger.log_metrics({"b": 3.0}, step=2)
    header, rows = _rows(logger)
    assert header == ["a", "b", "step"]
    assert [(r["a"], r["b"], r["step"]) for r in rows] == [("1.0", "", "0"), ("2.0", "", "1"), ("", "3.0", "2")]


def test_rows_are_buffered_until_the_flush_interval(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=5)
    for step in range(4):
        logger.log_metrics({"loss": float(step)}, step=step)
    assert not os.path.exists(os.path.join(logger.log_dir, "metrics.csv"))
    logger.log_metrics({"loss": 4.0}, step=4)  # (4 + 1) % 5 == 0 -> flush
    assert len(_rows(logger)[1]) == 5


def test_step_defaults_to_the_row_index(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"x": 1.0})
    logger.log_metrics({"x": 2.0})
    logger.save()
    assert [r["step"] for r in _rows(logger)[1]] == ["0", "1"]


def test_layout_versions_prefix_and_hparams(tmp_path: Path) -> None:
    CSVLogger(tmp_path).log_metrics({"x": 1.0}, step=0)
    logger = CSVLogger(tmp_path, name="exp", prefix="train")
    assert logger.version == 0  # versions are per experiment name
    logger = CSVLogger(tmp_path, prefix="train")
    assert logger.version == 1
    logger.log_hyperparams({"lr": 0.01, "layers": (32, 64)})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")

    assert logger.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_1")
    assert sorted(os.listdir(logger.log_dir)) == ["hparams.yaml", "metrics.csv"]
    assert _rows(logger)[0] == ["step", "train-loss"]
    assert yaml.full_load(Path(logger.log_dir, "hparams.yaml").read_text()) == {"lr": 0.01, "layers": (32, 64)}


def test_finalize_without_logging_writes_nothing(tmp_path: Path) -> None:
    CSVLogger(tmp_path).finalize("success")
    assert not (tmp_path / "lightning_logs").exists()


def test_nothing_is_written_on_non_zero_ranks(tmp_path: Path) -> None:
    rank_zero_only.rank = 2
    try:
        logger = CSVLogger(tmp_path)
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"x": 1.0}, step=0)
        logger.finalize("success")
    finally:
        rank_zero_only.rank = None
    assert not (tmp_path / "lightning_logs").exists()


def test_reusing_a_non_empty_version_folder_warns(tmp_path: Path) -> None:
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"x": 1.0}, step=0)
    first.finalize("success")
    second = CSVLogger(tmp_path, version=0)
    with pytest.warns(UserWarning, match="exists and is not empty"):
        second.log_metrics({"y": 1.0}, step=0)
    second.finalize("success")
    assert _rows(second)[0] == ["step", "y"]  # the old file was replaced, as Lightning says it will be


def test_resume_appends_to_the_same_file_and_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    first = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    first.log_metrics({"loss": 0.0}, step=0)
    first.log_metrics({"loss": 1.0}, step=1)
    state = first.state_dict()  # checkpoint: two rows on disk
    first.log_metrics({"loss": 99.0}, step=2)  # after the checkpoint; the job then died
    first.log_metrics({"loss": 98.0, "extra": 1.0}, step=3)

    resumed = CSVLogger(tmp_path)
    resumed.load_state_dict(state)
    resumed.log_metrics({"loss": 2.0}, step=2)
    resumed.log_metrics({"loss": 3.0, "acc": 0.5}, step=3)
    resumed.finalize("success")

    assert resumed.log_dir == first.log_dir
    header, rows = _rows(resumed)
    assert header == ["acc", "extra", "loss", "step"]
    assert [(r["step"], r["loss"], r["acc"]) for r in rows] == [
        ("0", "0.0", ""),
        ("1", "1.0", ""),
        ("2", "2.0", ""),
        ("3", "3.0", "0.5"),
    ]


def test_state_dict_flushes_buffered_rows_first(tmp_path: Path) -> None:
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"x": 1.0}, step=0)
    state = logger.state_dict()
    assert state == {"save_dir": str(tmp_path), "name": "lightning_logs", "version": 0, "rows_written": 1}
    assert len(_rows(logger)[1]) == 1


def test_bad_flush_interval_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_logs_every_n_steps=0"):
        CSVLogger(tmp_path, flush_logs_every_n_steps=0)


def test_resume_state_of_another_experiment_or_explicit_version_is_ignored(tmp_path: Path) -> None:
    old = CSVLogger(tmp_path / "old")
    old.log_metrics({"x": 1.0}, step=0)
    state = old.state_dict()

    elsewhere = CSVLogger(tmp_path / "new")
    elsewhere.load_state_dict(state)
    explicit = CSVLogger(tmp_path / "old", version="finetune")
    explicit.load_state_dict(state)
    other_name = CSVLogger(tmp_path / "old", name="other")
    other_name.load_state_dict(state)
    same = CSVLogger(tmp_path / "old")
    same.load_state_dict(state)

    assert elsewhere.log_dir == os.path.join(str(tmp_path / "new"), "lightning_logs", "version_0")
    assert explicit.version == "finetune"
    assert other_name.log_dir == os.path.join(str(tmp_path / "old"), "other", "version_0")
    assert same.version == 0  # the matching experiment continues its folder (not version_1)
