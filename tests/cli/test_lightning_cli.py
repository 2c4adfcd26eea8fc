"""LightningCLI: parsing, subcommands, config files, subclass mode, run=False, seeding, defaults, optimizers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fulmen.callbacks import EarlyStopping, LearningRateMonitor
from fulmen.cli import LightningCLI, ReduceLROnPlateau, SaveConfigCallback
from fulmen.errors import MisconfigurationException
from tests.cli.models import DeepRegressor, TinyData, TinyRegressor, quiet_args
from tests.conftest import REPO_ROOT


def test_fit_subcommand_trains_with_trainer_model_and_data_options(tmp_path: Path) -> None:
    cli = LightningCLI(
        TinyRegressor, TinyData,
        args=["fit", *quiet_args(tmp_path), "--trainer.max_epochs=2", "--model.hidden=3", "--data.batch_size=2"],
    )  # fmt: skip
    assert cli.subcommand == "fit"
    assert (cli.trainer.current_epoch, cli.trainer.global_step) == (2, 8)  # 8 samples / 2 per batch, 2 epochs
    assert cli.model.net[0].out_features == 3 and cli.model.hparams.hidden == 3
    assert cli.datamodule.batch_size == 2


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluation_subcommands_run_the_trainer_method(subcommand: str, tmp_path: Path) -> None:
    seen: list[str] = []

    class Recording(LightningCLI):
        def before_validate(self) -> None:
            seen.append("before_validate")

        def after_test(self) -> None:
            seen.append("after_test")

    cli = Recording(TinyRegressor, TinyData, args=[subcommand, *quiet_args(tmp_path)])
    assert cli.trainer.state.fn == {"validate": "validate", "test": "test", "predict": "predict"}[subcommand]
    if subcommand == "validate":
        assert seen == ["before_validate"] and "val_loss" in cli.trainer.callback_metrics
    if subcommand == "test":
        assert seen == ["after_test"] and "test_loss" in cli.trainer.callback_metrics


def test_config_file_is_read_and_the_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"hidden": 6, "lr": 0.5}, "trainer": {"max_epochs": 3}}))
    cli = LightningCLI(
        TinyRegressor, TinyData, run=False,
        args=[*quiet_args(tmp_path), "--config", str(config), "--model.lr=0.25"],
    )  # fmt: skip
    assert (cli.model.hparams.hidden, cli.model.hparams.lr) == (6, 0.25)
    assert cli.trainer.max_epochs == 3  # quiet_args (max_epochs=1) came before --config: the file wins over them


def test_print_config_prints_the_whole_config_and_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(TinyRegressor, TinyData, args=["fit", "--trainer.max_epochs=7", "--model.lr=0.3", "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("# fulmen==")
    printed = yaml.safe_load(out)
    assert printed["trainer"]["max_epochs"] == 7 and printed["model"] == {"hidden": 4, "lr": 0.3}
    assert printed["data"] == {"batch_size": 4} and printed["seed_everything"] is True
    assert "ckpt_path" in printed  # fit's own option


def test_unknown_trainer_flag_is_jsonargparses_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        LightningCLI(TinyRegressor, TinyData, args=["fit", "--trainer.bogus_flag=2"])
    assert exit_info.value.code == 2
    assert "error: unrecognized arguments: --trainer.bogus_flag=2" in capsys.readouterr().err


def test_a_missing_subcommand_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        LightningCLI(TinyRegressor, TinyData, args=["--model.lr=0.1"])
    assert "fit" in capsys.readouterr().err  # the error lists the subcommands


def test_run_false_instantiates_only_and_the_user_calls_fit(tmp_path: Path) -> None:
    cli = LightningCLI(TinyRegressor, TinyData, run=False, args=quiet_args(tmp_path))
    assert cli.subcommand is None and cli.trainer.global_step == 0
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2


def test_subclass_mode_takes_a_class_and_its_init_args(tmp_path: Path) -> None:
    cli = LightningCLI(
        TinyRegressor, TinyData, subclass_mode_model=True, run=False,
        args=[*quiet_args(tmp_path), "--model=DeepRegressor", "--model.init_args.depth=5", "--model.hidden=2"],
    )  # fmt: skip
    assert type(cli.model) is DeepRegressor and cli.model.depth == 5 and cli.model.hparams.hidden == 2


def test_without_a_model_class_any_lightning_module_is_accepted(tmp_path: Path) -> None:
    cli = LightningCLI(
        datamodule_class=TinyData, run=False,
        args=[*quiet_args(tmp_path), "--model=tests.cli.models.TinyRegressor", "--model.init_args.lr=0.2"],
    )  # fmt: skip
    assert type(cli.model) is TinyRegressor and cli.model.hparams.lr == 0.2


def test_args_as_a_dict(tmp_path: Path) -> None:
    cli = LightningCLI(
        TinyRegressor, TinyData, run=False,
        args={"trainer": {"max_epochs": 4, "default_root_dir": str(tmp_path)}, "model": {"hidden": 9}},
    )  # fmt: skip
    assert cli.trainer.max_epochs == 4 and cli.model.hparams.hidden == 9


@pytest.mark.parametrize(("default", "expected"), [(123, 123), (False, False)])
def test_seed_everything_default_is_used_and_written_into_the_config(
    default: int | bool, expected: int | bool, tmp_path: Path
) -> None:
    torch.manual_seed(999)
    before = torch.initial_seed()
    cli = LightningCLI(TinyRegressor, TinyData, run=False, seed_everything_default=default, args=quiet_args(tmp_path))
    assert cli.config["seed_everything"] == expected
    assert torch.initial_seed() == (expected if expected is not False else before)


def test_trainer_defaults_set_values_and_always_add_their_callbacks(tmp_path: Path) -> None:
    monitor = LearningRateMonitor()
    cli = LightningCLI(
        TinyRegressor, TinyData, run=False,
        trainer_defaults={"max_epochs": 6, "callbacks": [monitor]},
        args=[*quiet_args(tmp_path)[:-1], "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val_loss"],
    )  # fmt: skip
    assert cli.trainer.max_epochs == 6
    callbacks = cli.trainer.callbacks
    assert monitor in callbacks and any(isinstance(c, EarlyStopping) and c.monitor == "val_loss" for c in callbacks)
    assert sum(isinstance(c, SaveConfigCallback) for c in callbacks) == 1


def test_optimizer_and_scheduler_from_the_command_line_replace_configure_optimizers(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="configure_optimizers` will be overridden"):
        cli = LightningCLI(
            TinyRegressor, TinyData,
            args=["fit", *quiet_args(tmp_path), "--trainer.max_epochs=2", "--optimizer=Adam", "--optimizer.lr=0.01",
                  "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5"],
        )  # fmt: skip
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)  # stepped once per epoch


def test_reduce_lr_on_plateau_is_returned_with_its_monitor(tmp_path: Path) -> None:
    cli = LightningCLI(
        TinyRegressor, TinyData, run=False,
        args=[*quiet_args(tmp_path), "--optimizer=SGD", "--optimizer.lr=0.1", "--lr_scheduler=ReduceLROnPlateau",
              "--lr_scheduler.monitor=val_loss"],
    )  # fmt: skip
    configured = cli.model.configure_optimizers()
    assert isinstance(configured["lr_scheduler"]["scheduler"], ReduceLROnPlateau)
    assert configured["lr_scheduler"]["monitor"] == "val_loss"


def test_two_automatic_optimizers_are_refused(tmp_path: Path) -> None:
    class TwoOptimizers(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001
            parser.add_optimizer_args(torch.optim.SGD, nested_key="gen_optimizer")
            parser.add_optimizer_args(torch.optim.Adam, nested_key="disc_optimizer")

    with pytest.raises(MisconfigurationException, match="at most one optimizer"):
        TwoOptimizers(TinyRegressor, TinyData, run=False, args=quiet_args(tmp_path))


def test_parser_kwargs_per_subcommand(tmp_path: Path) -> None:
    defaults = tmp_path / "fit_defaults.yaml"
    defaults.write_text(yaml.safe_dump({"model": {"hidden": 11}}))
    cli = LightningCLI(
        TinyRegressor, TinyData, parser_kwargs={"fit": {"default_config_files": [str(defaults)]}},
        args=["fit", *quiet_args(tmp_path)],
    )  # fmt: skip
    assert cli.model.hparams.hidden == 11


def test_without_jsonargparse_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['jsonargparse'] = None\n"
        "try:\n    from fulmen.cli import LightningCLI\n"
        "except ImportError as error:\n    print(type(error).__name__, error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60).stdout
    assert "MissingExtraError" in out and "pip install 'fulmen[cli]'" in out and "jsonargparse" in out


def test_checkpoints_of_cli_models_rebuild_through_the_cli_config(tmp_path: Path) -> None:
    """load_from_checkpoint_support: hparams are the parsed config plus the instantiator, and a
    checkpoint of a subclass-mode model loads back as that class."""
    cli = LightningCLI(
        TinyRegressor, TinyData, subclass_mode_model=True,
        args=["fit", *quiet_args(tmp_path), "--model=DeepRegressor", "--model.init_args.depth=3", "--model.hidden=5"],
    )  # fmt: skip
    hparams = dict(cli.model.hparams)
    assert hparams == {"_class_path": "tests.cli.models.DeepRegressor", "hidden": 5, "lr": 0.1, "depth": 3,
                       "_instantiator": "fulmen.cli.instantiate_module"}  # fmt: skip
    path = tmp_path / "model.ckpt"
    cli.trainer.save_checkpoint(path)
    loaded = DeepRegressor.load_from_checkpoint(path)
    assert type(loaded) is DeepRegressor and (loaded.depth, loaded.hparams.hidden) == (3, 5)
    assert torch.equal(loaded.net[0].weight, cli.model.net[0].weight)
    without = LightningCLI(TinyRegressor, TinyData, run=False, load_from_checkpoint_support=False, args=quiet_args(tmp_path))
    assert dict(without.model.hparams) == {"hidden": 4, "lr": 0.1}


def test_an_instantiator_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    model = TinyRegressor()
    model.hparams["_instantiator"] = "os.system"
    trainer_cli = LightningCLI(TinyRegressor, TinyData, run=False, args=quiet_args(tmp_path))
    trainer_cli.trainer.fit(model, datamodule=trainer_cli.datamodule)
    trainer_cli.trainer.save_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="'os.system' from the checkpoint is not in the allowlist"):
        TinyRegressor.load_from_checkpoint(tmp_path / "bad.ckpt")


def test_ckpt_path_hyperparameters_become_the_model_config(tmp_path: Path) -> None:
    first = LightningCLI(TinyRegressor, TinyData, args=["fit", *quiet_args(tmp_path), "--model.hidden=6"])
    path = tmp_path / "first.ckpt"
    first.trainer.save_checkpoint(path)
    second = LightningCLI(TinyRegressor, TinyData, args=["validate", *quiet_args(tmp_path), f"--ckpt_path={path}"])
    assert second.model.hparams.hidden == 6  # from the checkpoint, not the default 4


def test_a_checkpoint_made_by_lightnings_cli_loads_through_fulmens_instantiator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fulmen.cli import instantiation

    calls: list[dict] = []
    original = instantiation.instantiate_module
    monkeypatch.setattr(instantiation, "instantiate_module", lambda cls, config: calls.append(config) or original(cls, config))
    model = TinyRegressor(hidden=3)
    cli = LightningCLI(TinyRegressor, TinyData, run=False, args=quiet_args(tmp_path))
    cli.trainer.fit(model, datamodule=cli.datamodule)
    path = tmp_path / "lightning_cli.ckpt"
    cli.trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"] = {"hidden": 3, "lr": 0.1, "_instantiator": "pytorch_lightning.cli.instantiate_module"}
    torch.save(checkpoint, path)
    loaded = TinyRegressor.load_from_checkpoint(path)
    assert calls == [{"hidden": 3, "lr": 0.1}] and loaded.hparams.hidden == 3
