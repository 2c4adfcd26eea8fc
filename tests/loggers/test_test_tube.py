"""``Trainer(experiment=exp)``: a test_tube ``Experiment`` (the real package's, and
``fulmen.compat.Experiment``) as the logger: its files, hyperparameters, the SummaryWriter as
``self.experiment``, exact continuation with ``Experiment(version=N)``, and ``create_git_tag``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.compat import Experiment as FulmenExperiment
from fulmen.errors import MisconfigurationException
from fulmen.loggers.test_tube import ExperimentLogger, last_checkpoint


@pytest.fixture(params=["fulmen.compat", "test_tube"])
def experiment_class(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Both Experiment classes; the real one only where test_tube (optional) is installed."""
    if request.param == "fulmen.compat":
        return FulmenExperiment
    test_tube = pytest.importorskip("test_tube", reason="test_tube is optional and not installed here")
    return test_tube.Experiment


class SeedModel(pl.LightningModule):
    """A 0.x-style module: hparams as a Namespace, images and histograms through self.experiment."""

    def __init__(self, hparams: argparse.Namespace) -> None:
        super().__init__()
        self.hp = hparams
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log("train_loss", loss)
        if batch_idx == 0:
            self.experiment.add_histogram("weight", self.layer.weight, self.global_step)
            self.logger.experiment.add_image("picture", torch.rand(3, 4, 4), self.global_step)
        return loss

    def train_dataloader(self) -> DataLoader:
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
        return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=16, shuffle=True)  # 4 batches

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hp.lr, momentum=0.9)


HPARAMS = argparse.Namespace(lr=0.1, layers=2, name="seed")


def _fit(experiment: Any, max_epochs: int, seed: int = 0) -> tuple[pl.Trainer, SeedModel]:
    pl.seed_everything(seed)
    model = SeedModel(HPARAMS)
    with pytest.warns(DeprecationWarning, match=r"Trainer\(experiment=...\).*logger=TensorBoardLogger"):
        trainer = pl.Trainer(experiment=experiment, max_epochs=max_epochs, log_every_n_steps=1,
                             enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model)
    return trainer, model


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_experiment_folder_gets_metrics_csv_tfevents_tags_and_checkpoints(
    tmp_path: Path, experiment_class: Callable[..., Any]
) -> None:
    exp = experiment_class(save_dir=str(tmp_path), name="seed", description="first")
    exp.argparse(HPARAMS)
    trainer, _ = _fit(exp, max_epochs=2)

    folder = tmp_path / "seed" / "version_0"
    assert trainer.logger.log_dir == str(folder)
    assert isinstance(trainer.logger, ExperimentLogger) and trainer.logger.experiment is exp
    rows = _rows(folder / "metrics.csv")
    assert len(rows) == 8  # 2 epochs x 4 batches, one row per logged step
    assert [float(r["epoch"]) for r in rows] == [0.0] * 4 + [1.0] * 4
    assert all(float(r["train_loss"]) > 0 and r["created_at"] for r in rows)
    tags = {r["key"]: r["value"] for r in _rows(folder / "meta_tags.csv")}
    assert tags["name"] == "seed" and float(tags["lr"]) == 0.1 and float(tags["layers"]) == 2
    meta = json.loads((folder / "meta.experiment").read_text())
    assert (meta["name"], meta["version"], meta["description"]) == ("seed", 0, "first")
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["epoch=1-step=8.ckpt"]

    events = EventAccumulator(str(folder / "tf"), size_guidance={"images": 0, "histograms": 0}).Reload()
    assert [e.step for e in events.Scalars("train_loss")] == list(range(8))
    assert {"weight"} <= set(events.Tags()["histograms"]) and {"picture"} <= set(events.Tags()["images"])


def test_experiment_version_continues_exactly_where_the_earlier_run_stopped(
    tmp_path: Path, experiment_class: Callable[..., Any]
) -> None:
    _, uninterrupted = _fit(experiment_class(save_dir=str(tmp_path / "straight"), name="seed"), max_epochs=4)

    first = experiment_class(save_dir=str(tmp_path / "split"), name="seed")
    _fit(first, max_epochs=2)
    first.close()
    again = experiment_class(save_dir=str(tmp_path / "split"), name="seed", version=0)
    # another seed: a fresh start would end elsewhere; the checkpoint restores weights and RNG states
    trainer, continued = _fit(again, max_epochs=4, seed=1)

    assert (trainer.current_epoch, trainer.global_step) == (4, 16)
    for name, value in uninterrupted.state_dict().items():
        torch.testing.assert_close(continued.state_dict()[name], value, rtol=0, atol=0)
    folder = tmp_path / "split" / "seed" / "version_0"
    assert not (tmp_path / "split" / "seed" / "version_1").exists()
    assert len(_rows(folder / "metrics.csv")) == 16  # the earlier rows kept, the new ones appended


def test_experiment_flag_warns_at_the_callers_line(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="logger=TensorBoardLogger") as record:
        pl.Trainer(experiment=FulmenExperiment(save_dir=str(tmp_path), name="seed"), enable_progress_bar=False)
    assert [Path(w.filename).name for w in record if w.category is DeprecationWarning] == [Path(__file__).name]


def test_fresh_experiment_version_starts_from_scratch(tmp_path: Path) -> None:
    _fit(FulmenExperiment(save_dir=str(tmp_path), name="seed"), max_epochs=1)
    trainer, _ = _fit(FulmenExperiment(save_dir=str(tmp_path), name="seed"), max_epochs=1)
    assert trainer.logger.version == 1 and trainer.global_step == 4


def test_last_checkpoint_prefers_last_files_then_the_newest(tmp_path: Path) -> None:
    assert last_checkpoint(str(tmp_path / "missing")) is None
    older, newer = tmp_path / "epoch=3-step=16.ckpt", tmp_path / "epoch=1-step=8.ckpt"
    older.write_bytes(b"")
    newer.write_bytes(b"")
    os.utime(older, (1, 1))
    assert last_checkpoint(str(tmp_path)) == str(newer)
    (tmp_path / "last.ckpt").write_bytes(b"")
    os.utime(tmp_path / "last.ckpt", (0, 0))
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "last.ckpt")


def _git_repo(path: Path) -> str:
    path.mkdir()
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "code"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True)
    return head.stdout.strip()


def test_create_git_tag_records_the_code_commit_and_tags_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@x"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    commit = _git_repo(tmp_path / "code")
    monkeypatch.chdir(tmp_path / "code")
    exp = FulmenExperiment(save_dir=str(tmp_path / "logs"), name="seed", description="tagged", create_git_tag=True)
    _fit(exp, max_epochs=1)

    folder = tmp_path / "logs" / "seed" / "version_0"
    meta = json.loads((folder / "meta.experiment").read_text())
    assert (meta["git_commit"], meta["git_tag"]) == (commit, "tt_seed_v0")
    assert {r["key"]: r["value"] for r in _rows(folder / "meta_tags.csv")}["git_commit"] == commit
    tagged = subprocess.run(["git", "rev-list", "-n", "1", "tt_seed_v0"], capture_output=True, text=True, check=True)
    assert tagged.stdout.strip() == commit


def test_create_git_tag_outside_a_repository_is_refused_before_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with pytest.raises(MisconfigurationException, match="not inside a git repository.*\n.*HINT"):
        FulmenExperiment(save_dir=str(tmp_path / "logs"), name="seed", create_git_tag=True)
    assert not (tmp_path / "logs").exists()


def test_real_test_tube_with_create_git_tag_is_refused_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_tube = pytest.importorskip("test_tube", reason="test_tube is optional and not installed here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    exp = test_tube.Experiment(save_dir=str(tmp_path / "logs"), name="seed", create_git_tag=True)
    with pytest.raises(MisconfigurationException, match="not inside a git repository"):
        pl.Trainer(experiment=exp, max_epochs=1)


def test_experiment_flag_rejects_a_second_logger_and_foreign_objects(tmp_path: Path) -> None:
    exp = FulmenExperiment(save_dir=str(tmp_path), name="seed")
    with pytest.warns(DeprecationWarning), pytest.raises(MisconfigurationException, match="both given"):
        pl.Trainer(experiment=exp, logger=pl.loggers.CSVLogger(tmp_path))
    with pytest.warns(DeprecationWarning), pytest.raises(MisconfigurationException, match="lacks log, tag"):
        pl.Trainer(experiment=object())


def test_module_experiment_is_the_loggers_summary_writer_unless_assigned(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    model = SeedModel(HPARAMS)
    assert model.experiment is None  # no trainer, no logger
    trainer = pl.Trainer(logger=pl.loggers.TensorBoardLogger(tmp_path), max_epochs=1, enable_progress_bar=False)
    trainer.fit(model)
    assert isinstance(model.experiment, SummaryWriter) and model.experiment is trainer.logger.experiment
    model.experiment = "mine"  # a 0.x module that kept its own attribute of that name
    assert model.experiment == "mine"
