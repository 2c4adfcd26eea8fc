"""Logger base class, dummy logger/experiment, param helpers and the trainer-side helpers."""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from fulmen.loggers.csv_logs import CSVLogger
from fulmen.loggers.logger import DummyExperiment, DummyLogger, Logger, VersionedFolderLogger, next_version, rank_zero_experiment
from fulmen.loggers.params import (
    add_prefix,
    convert_json_serializable,
    convert_params,
    flatten_dict,
    sanitize_callable_params,
    sanitize_params,
)
from fulmen.loggers.tensorboard import TensorBoardLogger
from fulmen.loggers.utilities import log_hyperparams, logger_name, logger_version, start_experiments
from fulmen.utilities.rank_zero import rank_zero_only


class RecordingLogger(Logger):
    """A minimal concrete logger: the abstract API is enough to plug into the Trainer."""

    def __init__(self, name: str = "rec", version: int | str = 0) -> None:
        self._name, self._version = name, version
        self.calls: list[tuple[str, Any]] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        return self._version

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self.calls.append(("metrics", dict(metrics), step))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("hparams", dict(params)))

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self.calls.append(("graph", model))

    def save(self) -> None:
        self.calls.append(("save",))


def test_abstract_methods_must_be_implemented() -> None:
    with pytest.raises(TypeError):
        Logger()  # type: ignore[abstract]


def test_base_defaults_and_state_dict() -> None:
    logger = RecordingLogger(version=3)
    assert (logger.root_dir, logger.log_dir, logger.save_dir, logger.group_separator) == (None, None, None, "/")
    assert logger.state_dict() == {"name": "rec", "version": 3}
    logger.finalize("success")  # default finalize saves
    assert logger.calls == [("save",)]


def test_rank_zero_experiment_gives_dummy_elsewhere() -> None:
    class WithExperiment:
        @property
        @rank_zero_experiment
        def experiment(self) -> str:
            return "real"

    assert WithExperiment().experiment == "real"
    rank_zero_only.rank = 1
    try:
        dummy = WithExperiment().experiment
    finally:
        rank_zero_only.rank = None
    assert isinstance(dummy, DummyExperiment)
    assert dummy.add_scalar("x", 1.0) is None
    assert dummy[0].anything() is None


def test_dummy_logger_accepts_anything() -> None:
    logger = DummyLogger()
    logger.log_metrics({"x": 1.0}, 0)
    logger.log_image("img", None)  # logger-specific methods are no-ops too
    assert logger[0] is logger
    assert (logger.name, logger.version) == ("", "")


def test_next_version_ignores_non_version_entries(tmp_path: Path) -> None:
    assert next_version(str(tmp_path / "missing")) == 0
    for name in ("version_0", "version_4", "version_x", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "version_9").write_text("a file, not a folder")
    assert next_version(str(tmp_path)) == 5


def test_param_helpers() -> None:
    @dataclass
    class Opt:
        name: str = "adam"
        lr: float = 0.1

    assert convert_params(None) == {}
    assert convert_params(Namespace(a=1)) == {"a": 1}
    assert flatten_dict({"opt": Opt(), "ns": Namespace(x=1), "deep": {"a": {"b": 2}}, 3: "int key"}) == {
        "opt/name": "adam",
        "opt/lr": 0.1,
        "ns/x": 1,
        "deep/a/b": 2,
        "3": "int key",
    }
    sanitized = sanitize_params(
        {"i": np.int64(3), "f": np.float32(0.5), "t": torch.ones(2, 2), "v": torch.ones(2), "o": [1, 2], "n": None}
    )
    assert sanitized["i"] == 3 and type(sanitized["i"]) is int
    assert sanitized["f"] == 0.5 and type(sanitized["f"]) is float
    assert isinstance(sanitized["t"], str) and isinstance(sanitized["v"], torch.Tensor)
    assert (sanitized["o"], sanitized["n"]) == ("[1, 2]", "None")
    assert add_prefix({"a": 1}, "", "-") == {"a": 1}
    assert add_prefix({"a": 1}, "train", "-") == {"train-a": 1}


def test_flatten_dict_indexes_lists_of_dicts_like_lightning_2_6() -> None:
    flat = flatten_dict({"dl": [{"a": 1, "c": 3}, {"b": 2}], "l": [1, 2], "mixed": [{"a": 1}, 2], "empty": []})
    assert flat == {"dl/0/a": 1, "dl/0/c": 3, "dl/1/b": 2, "l": [1, 2], "mixed": [{"a": 1}, 2], "empty": []}


def test_callables_and_non_json_values_become_showable() -> None:
    def needs_argument(x: int) -> int:
        return x

    def factory() -> Any:
        return needs_argument

    params = {"cls": torch.nn.ReLU, "value": lambda: 3, "named": needs_argument, "factory": factory, "n": 1}
    assert sanitize_callable_params(params) == {
        "cls": "ReLU", "value": 3, "named": "needs_argument", "factory": "factory", "n": 1,
    }  # fmt: skip
    converted = convert_json_serializable({"ok": [1, {"a": None}], "set": {1}, "path": Path("/x"), "inf": 1e400})
    assert converted == {"ok": [1, {"a": None}], "set": "{1}", "path": "/x", "inf": 1e400}


def test_start_experiments_starts_run_loggers_wandb_first_but_no_version_folder(tmp_path: Path) -> None:
    started: list[str] = []

    class RunLogger(RecordingLogger):
        @property
        def experiment(self) -> str:
            started.append(type(self).__name__)
            return "run"

    class WandbLogger(RunLogger):  # started first whatever its position: wandb.init precedes writers
        pass

    csv = CSVLogger(tmp_path)
    start_experiments([csv, RunLogger(), WandbLogger(), RecordingLogger()])
    assert started == ["WandbLogger", "RunLogger"]
    assert not (tmp_path / "lightning_logs").exists()  # a resume may still pick another version_N


def test_logger_version_and_name_for_several_loggers() -> None:
    a, b, c = RecordingLogger("x", 1), RecordingLogger("y", 1), RecordingLogger("x", "v2")
    assert logger_version([a]) == 1
    assert logger_version([a, b, c]) == "1_v2"
    assert logger_name([a, b, c]) == "x_y"


def _fake_trainer(module_hparams: dict, dm_hparams: dict | None, loggers: list[Logger]) -> Any:
    module = SimpleNamespace(_log_hyperparams=True, hparams_initial=module_hparams)
    datamodule = None if dm_hparams is None else SimpleNamespace(_log_hyperparams=True, hparams_initial=dm_hparams)
    return SimpleNamespace(loggers=loggers, lightning_module=module, datamodule=datamodule)


def test_log_hyperparams_merges_module_and_datamodule() -> None:
    logger = RecordingLogger()
    trainer = _fake_trainer({"lr": 0.1}, {"batch_size": 32}, [logger])
    log_hyperparams(trainer)
    assert logger.calls == [
        ("hparams", {"lr": 0.1, "batch_size": 32}),
        ("graph", trainer.lightning_module),
        ("save",),
    ]


def test_log_hyperparams_conflicting_keys_is_an_error() -> None:
    trainer = _fake_trainer({"lr": 0.1}, {"lr": 0.2}, [RecordingLogger()])
    with pytest.raises(RuntimeError, match=r"(?s)\[.lr.\].*HINT"):
        log_hyperparams(trainer)


@pytest.mark.parametrize("logger_cls", [CSVLogger, TensorBoardLogger])
def test_file_loggers_share_the_versioned_folder_layout_and_resume_rule(logger_cls: type, tmp_path: Path) -> None:
    assert issubclass(logger_cls, VersionedFolderLogger)
    (tmp_path / "exp" / "version_4").mkdir(parents=True)
    logger = logger_cls(tmp_path, name="exp")
    assert (logger.version, logger.root_dir) == (5, str(tmp_path / "exp"))
    assert logger.log_dir == str(tmp_path / "exp" / "version_5")
    assert {k: logger.state_dict()[k] for k in ("save_dir", "name", "version")} == {
        "save_dir": str(tmp_path), "name": "exp", "version": 5,
    }
    logger.load_state_dict({"save_dir": str(tmp_path), "name": "exp", "version": 2})
    assert logger.log_dir == str(tmp_path / "exp" / "version_2")
    pinned = logger_cls(tmp_path, name="", version="mine")
    pinned.load_state_dict({"save_dir": str(tmp_path), "name": "", "version": 2})  # a given version is kept
    assert pinned.log_dir == str(tmp_path / "mine")
