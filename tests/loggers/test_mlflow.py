"""MLFlowLogger against a real local file store: arguments, metric names, params, status,
checkpoint artifacts (log_model), rank-zero-only writing, and the errors for a missing package
or a store mlflow refuses."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("mlflow")

from fulmen.errors import MisconfigurationException, MissingExtraError  # noqa: E402
from fulmen.loggers.logger import DummyExperiment  # noqa: E402
from fulmen.loggers.mlflow import MLFlowLogger  # noqa: E402
from fulmen.utilities.rank_zero import rank_zero_only  # noqa: E402
from tests.compat.readers import mlflow_run  # noqa: E402


@pytest.fixture(autouse=True)
def _file_store_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _logger(tmp_path: Path, **kwargs: Any) -> MLFlowLogger:
    return MLFlowLogger(tracking_uri=f"file:{tmp_path / 'mlruns'}", **kwargs)


def _read(logger: MLFlowLogger) -> dict[str, Any]:
    return mlflow_run(logger._tracking_uri, logger.run_id)


class _Checkpoints:
    """What MLFlowLogger reads of a ModelCheckpoint: the files it tracks and its settings."""

    def __init__(self, folder: Path, save_top_k: int = 1) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.save_top_k = save_top_k
        self.monitor, self.mode, self.save_last, self.save_weights_only = "val_loss", "min", None, False
        self.last_model_path, self.current_score = "", None
        self.best_model_path, self.best_model_score = "", None
        self.best_k_models: dict[str, torch.Tensor] = {}

    def save(self, name: str, score: float) -> str:
        path = str(self.folder / name)
        Path(path).write_bytes(os.urandom(16))
        self.best_model_path, self.best_model_score = path, torch.tensor(score)
        self.current_score = torch.tensor(score)
        self.best_k_models = {path: torch.tensor(score)}
        return path


def test_missing_mlflow_is_an_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fulmen\[mlflow\]'"):
        _logger(tmp_path)


def test_refused_file_store_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    with pytest.raises(MisconfigurationException, match="MLFLOW_ALLOW_FILE_STORE=true") as info:
        _logger(tmp_path)
    assert "HINT:" in str(info.value) and "mlruns" in str(info.value)


def test_bad_log_model_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match=r"log_model='best'.*True, False or 'all'"):
        _logger(tmp_path, log_model="best")
    assert not (tmp_path / "mlruns").exists()


def test_tracking_uri_defaults_to_the_environment_then_save_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert MLFlowLogger(save_dir=str(tmp_path / "a")).save_dir == str(tmp_path / "a")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'from_env'}")
    assert MLFlowLogger(save_dir=str(tmp_path / "ignored")).save_dir == str(tmp_path / "from_env")


def test_metric_names_lose_characters_mlflow_refuses_and_strings_are_dropped(tmp_path: Path) -> None:
    logger = _logger(tmp_path, prefix="fit")
    with pytest.warns(RuntimeWarning, match="Replacing fit-acc@top:1 with fit-acctop1"):
        logger.log_metrics({"acc@top:1": torch.tensor(0.5), "train/loss x.y": 2.0, "note": "text"}, step=7)
    logger.log_metrics({"train/loss x.y": 1.0})  # no step: 0, as in Lightning
    metrics = _read(logger)["metrics"]
    assert metrics == {"fit-acctop1": [[7, 0.5]], "fit-train/loss x.y": [[7, 2.0], [0, 1.0]]}


def test_hyperparameters_are_flattened_stringified_and_truncated(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    many = {f"p{index:03d}": index for index in range(150)}  # more than one log_batch call takes
    logger.log_hyperparams({"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "long": "x" * 300, "many": many})
    params = _read(logger)["params"]
    assert params["opt/lr"] == "0.1" and params["opt/betas"] == "[0.9, 0.99]"
    assert params["long"] == "x" * 250
    assert len([key for key in params if key.startswith("many/")]) == 150


def test_run_name_tags_and_finalize_status(tmp_path: Path) -> None:
    logger = _logger(tmp_path, run_name="named", tags={"team": "a", "mlflow.runName": "overridden"})
    logger.log_metrics({"x": 1.0}, step=0)
    assert _read(logger)["status"] == "RUNNING"
    logger.finalize("failed")
    run = _read(logger)
    assert run["status"] == "FAILED"
    assert run["tags"]["team"] == "a" and run["tags"]["mlflow.runName"] == "named"
    assert logger.name == logger.experiment_id and logger.version == logger.run_id


def test_finalize_without_any_logging_creates_no_run(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    logger.finalize("success")
    assert not logger._initialized


def test_run_id_continues_an_existing_run(tmp_path: Path) -> None:
    first = _logger(tmp_path)
    first.log_metrics({"x": 1.0}, step=0)
    second = _logger(tmp_path, run_id=first.run_id)
    second.log_metrics({"x": 2.0}, step=1)
    second.finalize("success")
    assert second.experiment_id == first.experiment_id
    assert _read(first)["metrics"] == {"x": [[0, 1.0], [1, 2.0]]}
    assert _read(first)["status"] == "FINISHED"


def test_log_model_true_copies_the_checkpoints_at_the_end_and_rewritten_files_again(tmp_path: Path) -> None:
    logger = _logger(tmp_path, log_model=True)
    callback = _Checkpoints(tmp_path / "ckpts")
    callback.save("epoch=0.ckpt", 2.0)
    logger.after_save_checkpoint(callback)
    assert _read(logger)["artifacts"] == []  # only remembered: copied when training ends
    logger.finalize("success")
    run = _read(logger)
    assert run["artifacts"] == ["epoch=0/aliases.txt", "epoch=0/epoch=0.ckpt", "epoch=0/metadata.yaml"]
    assert run["artifact_texts"]["epoch=0/aliases.txt"] == "['latest', 'best']"
    assert "score: 2.0" in run["artifact_texts"]["epoch=0/metadata.yaml"]
    assert "original_filename: epoch=0.ckpt" in run["artifact_texts"]["epoch=0/metadata.yaml"]
    assert set(logger._logged_model_time) == {callback.best_model_path}


def test_log_model_all_copies_each_checkpoint_as_it_is_saved(tmp_path: Path) -> None:
    logger = _logger(tmp_path, log_model="all")
    callback = _Checkpoints(tmp_path / "ckpts")
    callback.save("epoch=0.ckpt", 2.0)
    logger.after_save_checkpoint(callback)
    assert "epoch=0/epoch=0.ckpt" in _read(logger)["artifacts"]
    callback.save("epoch=1.ckpt", 1.0)
    logger.after_save_checkpoint(callback)
    logger.after_save_checkpoint(callback)  # nothing new: nothing copied twice
    artifacts = _read(logger)["artifacts"]
    assert [path for path in artifacts if path.endswith(".ckpt")] == ["epoch=0/epoch=0.ckpt", "epoch=1/epoch=1.ckpt"]
    # a file rewritten under the same name (last.ckpt) is copied again
    old_time = logger._logged_model_time[callback.best_model_path]
    time.sleep(0.01)
    Path(callback.best_model_path).write_bytes(b"rewritten")
    logger.after_save_checkpoint(callback)
    assert logger._logged_model_time[callback.best_model_path] > old_time


def test_log_model_true_with_save_top_k_minus_one_copies_during_training(tmp_path: Path) -> None:
    logger = _logger(tmp_path, log_model=True)
    callback = _Checkpoints(tmp_path / "ckpts", save_top_k=-1)
    callback.save("epoch=0.ckpt", 2.0)
    logger.after_save_checkpoint(callback)
    assert "epoch=0/epoch=0.ckpt" in _read(logger)["artifacts"]


def test_other_ranks_create_and_log_nothing(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    rank_zero_only.rank = 1
    try:
        assert isinstance(logger.experiment, DummyExperiment)
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"x": 1.0}, step=0)
        logger.finalize("success")
    finally:
        rank_zero_only.rank = None
    assert not logger._initialized
    assert [entry.name for entry in (tmp_path / "mlruns").iterdir() if not entry.name.startswith(".")] == ["0"]
