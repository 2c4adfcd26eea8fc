"""WandbLogger: arguments, what reaches the run (config, metrics with their step axis, artifacts),
rank-zero-only behaviour, and one real offline run read back from the file wandb writes.

Most tests hand the logger a recording stand-in for the run (``experiment=``, as a user may pass
an existing run), so they neither start wandb's service nor touch the network; the real run is
offline (``WANDB_MODE=offline``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("wandb")

from fulmen.errors import MisconfigurationException, MissingExtraError  # noqa: E402
from fulmen.loggers.logger import DummyExperiment  # noqa: E402
from fulmen.loggers.wandb import WandbLogger  # noqa: E402
from fulmen.utilities.rank_zero import rank_zero_only  # noqa: E402
from tests.compat.readers import wandb_offline_run  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)


class _Run:
    """Records what the logger hands a wandb run."""

    def __init__(self) -> None:
        self.id = "abc123"
        self.name = "display"
        self.logged: list[dict[str, Any]] = []
        self.config_updates: list[dict[str, Any]] = []
        self.artifacts: list[tuple[Any, list[str]]] = []
        self.config = self

    def update(self, params: dict[str, Any], allow_val_change: bool = False) -> None:
        assert allow_val_change
        self.config_updates.append(params)

    def log(self, metrics: dict[str, Any]) -> None:
        self.logged.append(metrics)

    def log_artifact(self, artifact: Any, aliases: list[str]) -> None:
        self.artifacts.append((artifact, aliases))

    def watch(self, model: Any, **kwargs: Any) -> None:
        self.watched = (model, kwargs)


class _NotJson:
    def __str__(self) -> str:
        return "not-json"


def test_missing_wandb_is_an_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fulmen\[wandb\]'"):
        WandbLogger()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"offline": True, "log_model": True}, "cannot be uploaded in offline mode"),
        ({"offline": True, "log_model": "all"}, "cannot be uploaded in offline mode"),
        ({"log_model": "best"}, r"log_model='best'.*True, False or 'all'"),
        ({"add_file_policy": "copy"}, r"add_file_policy='copy'.*'mutable' or 'immutable'"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        WandbLogger(**kwargs)


def test_name_version_and_save_dir_without_starting_a_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import wandb

    logger = WandbLogger(save_dir=tmp_path, version="given-id", id="ignored")
    assert (logger.name, logger.version, logger.save_dir) == ("lightning_logs", "given-id", str(tmp_path))
    assert WandbLogger(save_dir=None, dir=tmp_path / "d").save_dir == str(tmp_path / "d")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    assert WandbLogger().name == "from-env"
    assert WandbLogger(experiment=_Run()).version == "abc123"
    assert wandb.run is None


def test_hyperparameters_reach_the_config_as_json(tmp_path: Path) -> None:
    run = _Run()
    WandbLogger(experiment=run).log_hyperparams(
        {"act": torch.nn.ReLU, "schedule": lambda: "cosine", "obj": _NotJson(), "nested": {"a": [1, 2]}}
    )
    assert run.config_updates == [{"act": "ReLU", "schedule": "cosine", "obj": "not-json", "nested": {"a": [1, 2]}}]


def test_metrics_carry_the_trainer_step_and_the_prefix() -> None:
    run = _Run()
    logger = WandbLogger(experiment=run, prefix="fit")
    logger.log_metrics({"train/loss": 0.5}, step=3)
    logger.log_metrics({"x": 1.0})
    assert run.logged == [{"fit-train/loss": 0.5, "trainer/global_step": 3}, {"fit-x": 1.0}]


def test_a_pickled_logger_resumes_the_same_run_by_id() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(WandbLogger(experiment=_Run(), project="p")))
    assert copy._experiment is None  # a run cannot cross processes
    assert (copy.version, copy._wandb_init["id"], copy._wandb_init["resume"]) == ("abc123", "abc123", "allow")
    assert copy._name == "display"


def test_watch_hands_the_model_to_the_run_with_lightnings_defaults() -> None:
    run, model = _Run(), torch.nn.Linear(2, 1)
    WandbLogger(experiment=run).watch(model)
    assert run.watched == (model, {"log": "gradients", "log_freq": 100, "log_graph": True})


def test_media_arguments_must_be_lists_of_matching_length() -> None:
    logger = WandbLogger(experiment=_Run())
    with pytest.raises(TypeError, match='Expected a list as "images"'):
        logger.log_image("k", images="not-a-list")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected 2 items but only found 1 for caption"):
        logger.log_image("k", images=[1, 2], caption=["one"])


def test_log_model_all_uploads_each_new_checkpoint_as_a_model_artifact(tmp_path: Path) -> None:
    run = _Run()
    logger = WandbLogger(experiment=run, log_model="all")
    path = tmp_path / "epoch=0.ckpt"
    path.write_bytes(b"weights")

    class Checkpoints:
        save_top_k, monitor, mode = 1, "val_loss", "min"
        last_model_path, current_score = "", None
        best_model_path, best_model_score = str(path), torch.tensor(0.25)
        best_k_models = {str(path): torch.tensor(0.25)}

    logger.after_save_checkpoint(Checkpoints())
    logger.after_save_checkpoint(Checkpoints())  # unchanged file: not uploaded again
    assert len(run.artifacts) == 1
    artifact, aliases = run.artifacts[0]
    assert (artifact.name, artifact.type, aliases) == ("model-abc123", "model", ["latest", "best"])
    assert artifact.metadata["score"] == 0.25 and artifact.metadata["original_filename"] == "epoch=0.ckpt"
    assert artifact.metadata["Checkpoints"]["monitor"] == "val_loss"
    assert list(artifact.manifest.entries) == ["model.ckpt"]


def test_log_model_true_uploads_only_after_a_successful_fit(tmp_path: Path) -> None:
    run = _Run()
    logger = WandbLogger(experiment=run, log_model=True, checkpoint_name="weights")
    path = tmp_path / "best.ckpt"
    path.write_bytes(b"weights")

    class Checkpoints:
        save_top_k, last_model_path, current_score = 1, "", None
        best_model_path, best_model_score, best_k_models = str(path), 1.0, {}

    logger.after_save_checkpoint(Checkpoints())
    logger.finalize("failed")
    assert run.artifacts == []
    logger.finalize("success")
    assert [artifact.name for artifact, _ in run.artifacts] == ["weights"]


def test_other_ranks_get_a_dummy_and_start_no_run() -> None:
    import wandb

    logger = WandbLogger(offline=True)
    rank_zero_only.rank = 1
    try:
        assert isinstance(logger.experiment, DummyExperiment)
        logger.log_metrics({"x": 1.0}, step=0)
        logger.log_hyperparams({"lr": 0.1})
    finally:
        rank_zero_only.rank = None
    assert wandb.run is None and logger.version is None


def test_offline_run_is_written_locally_without_changing_the_process_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import wandb

    monkeypatch.delenv("WANDB_MODE")
    logger = WandbLogger(save_dir=tmp_path, offline=True, project="unit", name="run")
    try:
        logger.log_hyperparams({"lr": 0.1})
        logger.log_metrics({"loss": 0.5}, step=4)
        run_dir = Path(logger.experiment.dir).parent
        assert logger.version == logger.experiment.id and "WANDB_MODE" not in os.environ
    finally:
        wandb.finish()
        wandb.teardown()  # the service writes the run file; stopping it makes the file complete
    written = wandb_offline_run(run_dir)
    assert run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    assert written["config"] == {"lr": 0.1}
    assert written["history"] == [{"_step": 0, "loss": 0.5, "trainer/global_step": 4}]
