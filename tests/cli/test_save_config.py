"""SaveConfigCallback: config.yaml in the log dir, once; Lightning's error instead of overwriting one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fulmen.cli import LightningCLI, SaveConfigCallback
from tests.cli.models import TinyData, TinyRegressor, quiet_args


def _fit_args(root: Path, *extra: str) -> list[str]:
    return ["fit", *quiet_args(root), "--trainer.logger=false", "--trainer.enable_checkpointing=false", *extra]


def test_the_config_is_saved_into_the_log_dir_and_reproduces_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = LightningCLI(TinyRegressor, TinyData, args=["fit", *quiet_args(tmp_path), "--model.hidden=7"])
    saved = Path(cli.trainer.log_dir) / "config.yaml"
    assert saved.parent == tmp_path / "lightning_logs" / "version_0"
    config = yaml.safe_load(saved.read_text())
    assert config["model"] == {"hidden": 7, "lr": 0.1} and config["seed_everything"] == 0  # the seed actually used
    assert config["trainer"]["logger"] is None and "ckpt_path" in config  # None values are written too
    with pytest.raises(SystemExit):  # the file is a valid `fit --config` for the same script
        LightningCLI(TinyRegressor, TinyData, args=["fit", "--config", str(saved), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == config


def test_an_existing_config_is_lightnings_error(tmp_path: Path) -> None:
    LightningCLI(TinyRegressor, TinyData, args=_fit_args(tmp_path))
    (tmp_path / "config.yaml").write_text("mine: true\n")
    with pytest.raises(RuntimeError, match=r"expected .*config\.yaml to NOT exist\. Aborting to avoid overwriting"):
        LightningCLI(TinyRegressor, TinyData, args=_fit_args(tmp_path))
    assert (tmp_path / "config.yaml").read_text() == "mine: true\n"


def test_overwrite_true_replaces_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("mine: true\n")
    LightningCLI(TinyRegressor, TinyData, args=_fit_args(tmp_path), save_config_kwargs={"overwrite": True})
    assert "model" in yaml.safe_load((tmp_path / "config.yaml").read_text())


def test_config_filename_and_no_callback(tmp_path: Path) -> None:
    LightningCLI(TinyRegressor, TinyData, args=_fit_args(tmp_path), save_config_kwargs={"config_filename": "run.yaml"})
    assert (tmp_path / "run.yaml").is_file() and not (tmp_path / "config.yaml").exists()
    cli = LightningCLI(TinyRegressor, TinyData, args=_fit_args(tmp_path / "b"), save_config_callback=None)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.yaml"))
    assert not any(isinstance(c, SaveConfigCallback) for c in cli.trainer.callbacks)


def test_fast_dev_run_saves_nothing(tmp_path: Path) -> None:
    cli = LightningCLI(TinyRegressor, TinyData, args=_fit_args(tmp_path, "--trainer.fast_dev_run=true"))
    assert not any(isinstance(c, SaveConfigCallback) for c in cli.trainer.callbacks)
    assert not list(tmp_path.rglob("config.yaml"))


def test_saved_once_when_fit_is_followed_by_test(tmp_path: Path) -> None:
    cli = LightningCLI(TinyRegressor, TinyData, run=False, args=[*quiet_args(tmp_path), "--trainer.logger=false"])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule)  # would raise "expected ... to NOT exist" if saved again
    assert (tmp_path / "config.yaml").is_file()


def test_save_to_log_dir_false_needs_a_save_config_override(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only makes sense when subclassing SaveConfigCallback"):
        SaveConfigCallback(parser=None, config=None, save_to_log_dir=False)  # type: ignore[arg-type]

    stored: list[Any] = []

    class ToLogger(SaveConfigCallback):
        def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
            stored.append(self.parser.dump(self.config))

    LightningCLI(
        TinyRegressor, TinyData, args=_fit_args(tmp_path),
        save_config_callback=ToLogger, save_config_kwargs={"save_to_log_dir": False},
    )  # fmt: skip
    assert len(stored) == 1 and "hidden: 4" in stored[0] and not (tmp_path / "config.yaml").exists()
