"""TensorBoardLogger: real tfevents read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import os
import pickle
import time
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fulmen.loggers.tensorboard import TensorBoardLogger
from fulmen.utilities.rank_zero import rank_zero_only


def _scalars(log_dir: str, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(log_dir)
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_scalars_are_readable_by_tensorboard_with_their_steps(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    for step in range(4):
        logger.log_metrics({"loss": torch.tensor(1.0 / (step + 1)), "acc": 0.25 * step}, step=step)
    logger.finalize("success")

    assert _scalars(logger.log_dir, "loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, 0.25)]
    assert _scalars(logger.log_dir, "acc") == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]


def test_versions_count_up_in_lightning_logs(tmp_path: Path) -> None:
    first = TensorBoardLogger(tmp_path)
    first.log_metrics({"x": 1.0}, step=0)
    second = TensorBoardLogger(tmp_path)
    second.log_metrics({"x": 1.0}, step=0)

    assert (first.version, second.version) == (0, 1)
    assert second.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_1")
    assert sorted(os.listdir(tmp_path / "lightning_logs")) == ["version_0", "version_1"]


def test_explicit_string_version_name_and_sub_dir_shape_the_log_dir(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="exp", version="run-a", sub_dir="train")
    assert logger.log_dir == os.path.join(str(tmp_path), "exp", "run-a", "train")
    assert logger.root_dir == os.path.join(str(tmp_path), "exp")
    assert logger.save_dir == str(tmp_path)
    assert TensorBoardLogger(tmp_path, name="exp", version=7).log_dir.endswith(os.path.join("exp", "version_7"))


def test_writer_is_created_lazily_and_nothing_is_written_before_first_use(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    assert logger._experiment is None
    assert not (tmp_path / "lightning_logs").exists()


def test_hparams_yaml_and_default_hp_metric(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams(Namespace(lr=0.01, layers=[32, 64], opt={"name": "adam", "beta": 0.9}))
    logger.save()
    logger.finalize("success")

    hparams = yaml.full_load((Path(logger.log_dir) / "hparams.yaml").read_text())
    assert hparams == {"lr": 0.01, "layers": [32, 64], "opt": {"name": "adam", "beta": 0.9}}
    assert _scalars(logger.log_dir, "hp_metric") == [(0, -1.0)]


def test_hparams_with_explicit_metric_and_no_default(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_hyperparams({"lr": 0.1}, metrics={"val_acc": 0.9})
    logger.finalize("success")
    accumulator = EventAccumulator(logger.log_dir)
    accumulator.Reload()
    assert "hp_metric" not in accumulator.Tags()["scalars"]
    assert _scalars(logger.log_dir, "val_acc") == [(0, pytest.approx(0.9))]


def test_prefix_and_dict_values(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, prefix="train")
    logger.log_metrics({"loss": 2.0}, step=3)
    logger.log_metrics({"parts": {"a": 1.0, "b": 2.0}}, step=4)
    logger.finalize("success")
    assert _scalars(logger.log_dir, "train-loss") == [(3, 2.0)]


def test_non_scalar_value_is_a_clear_error(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    with pytest.raises(ValueError, match="'weights'.*not a scalar"):
        logger.log_metrics({"weights": torch.ones(3)}, step=0)


def test_nothing_is_written_on_non_zero_ranks(tmp_path: Path) -> None:
    rank_zero_only.rank = 1
    try:
        logger = TensorBoardLogger(tmp_path)
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"loss": 1.0}, step=0)
        logger.save()
        logger.finalize("success")
        assert type(logger.experiment).__name__ == "DummyExperiment"
    finally:
        rank_zero_only.rank = None
    assert not (tmp_path / "lightning_logs").exists()


def test_resume_keeps_the_version_and_hides_events_after_the_checkpoint(tmp_path: Path) -> None:
    first = TensorBoardLogger(tmp_path)
    for step in range(3):
        first.log_metrics({"loss": float(step)}, step=step)
    state = first.state_dict()  # "checkpoint" after step 2
    first.log_metrics({"loss": 99.0}, step=3)  # logged after the checkpoint, then the job died
    first.finalize("failed")
    # A restart is a new process seconds later; event files are ordered by their creation second.
    time.sleep(1.05)

    resumed = TensorBoardLogger(tmp_path)
    resumed.load_state_dict(state)
    for step in range(3, 5):
        resumed.log_metrics({"loss": float(step)}, step=step)
    resumed.finalize("success")

    assert resumed.log_dir == first.log_dir
    assert os.listdir(tmp_path / "lightning_logs") == ["version_0"]
    assert _scalars(resumed.log_dir, "loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]


def test_load_state_dict_after_early_use_reopens_the_resumed_version(tmp_path: Path) -> None:
    TensorBoardLogger(tmp_path).log_metrics({"x": 1.0}, step=0)  # version_0 exists
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"x": 1.0}, step=0)  # opened version_1 before the restore
    logger.load_state_dict({"name": "lightning_logs", "version": 0, "last_step": 0})
    logger.log_metrics({"x": 2.0}, step=1)
    logger.finalize("success")
    assert logger.version == 0
    assert (1, 2.0) in _scalars(logger.log_dir, "x")


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # tensorboard's add_graph traces
def test_log_graph_uses_example_input_array(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    model.example_input_array = torch.zeros(2, 4)
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    logger.log_graph(model)
    logger.finalize("success")
    accumulator = EventAccumulator(logger.log_dir)
    accumulator.Reload()
    assert accumulator.Tags()["graph"] is True


def test_log_graph_without_input_warns(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    with pytest.warns(UserWarning, match="example_input_array"):
        logger.log_graph(torch.nn.Linear(2, 2))


def test_pickled_logger_drops_the_writer(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"x": 1.0}, step=0)
    clone = pickle.loads(pickle.dumps(logger))
    assert clone._experiment is None
    assert clone.log_dir == logger.log_dir
    logger.finalize("success")


def test_explicit_version_is_not_redirected_by_a_resume_state(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, version="finetune")
    logger.load_state_dict({"save_dir": str(tmp_path), "name": "lightning_logs", "version": 0, "last_step": 5})
    assert logger.version == "finetune" and logger._purge_step is None
