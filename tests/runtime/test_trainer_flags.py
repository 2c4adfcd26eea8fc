"""Trainer flags: limits, stopping, validation timing, fast_dev_run, legacy names, unknown names."""

from __future__ import annotations

import datetime

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.errors import MisconfigurationException, UnknownFlagError
from fulmen.runtime.trainer_flags import parse_max_time
from tests.core.models import TRAINER_QUIET, BoringModel, RandomDataset


class Counting(BoringModel):
    """Counts training and validation batches per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.train_batches: list[tuple[int, int]] = []
        self.val_runs: list[tuple[int, int]] = []
        self.val_batches = 0

    def training_step(self, batch, batch_idx):
        self.train_batches.append((self.current_epoch, batch_idx))
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.val_batches += 1

    def on_validation_start(self):
        self.val_runs.append((self.current_epoch, self.global_step))


def _fit(model=None, **kwargs) -> tuple[pl.Trainer, Counting]:
    model = model or Counting()
    trainer = pl.Trainer(**{**TRAINER_QUIET, **kwargs})
    trainer.fit(model)
    return trainer, model


def test_unknown_flag_lists_close_matches() -> None:
    with pytest.raises(UnknownFlagError, match="'max_epoch'.*Did you mean 'max_epochs'"):
        pl.Trainer(max_epoch=3)
    with pytest.raises(TypeError):  # also a TypeError, like Python's own message
        pl.Trainer(grdient_clip_val=1.0)


def test_limits_as_ints_fractions_and_zero() -> None:
    trainer, model = _fit(max_epochs=1, limit_train_batches=0.25, limit_val_batches=3, num_sanity_val_steps=0)
    assert trainer.num_training_batches == 8  # 32 batches * 0.25
    assert trainer.num_val_batches == [3]
    assert len(model.train_batches) == 8 and model.val_batches == 3
    trainer, model = _fit(max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    assert model.val_runs == [] and trainer.num_training_batches == 2
    with pytest.raises(MisconfigurationException, match="limit_train_batches"):
        pl.Trainer(limit_train_batches=1.5)


def test_max_epochs_max_steps_and_min_epochs() -> None:
    trainer, model = _fit(max_epochs=2, limit_train_batches=3, limit_val_batches=0)
    assert (trainer.current_epoch, trainer.global_step) == (2, 6)
    trainer, model = _fit(max_steps=5, limit_train_batches=3, limit_val_batches=0)
    assert trainer.global_step == 5 and model.train_batches[-1] == (1, 1)

    class StopsEarly(Counting):
        def on_train_epoch_end(self):
            self.trainer.should_stop = True

    trainer, model = _fit(StopsEarly(), max_epochs=5, min_epochs=3, limit_train_batches=1, limit_val_batches=0)
    assert trainer.current_epoch == 3
    trainer, model = _fit(StopsEarly(), max_epochs=5, limit_train_batches=1, limit_val_batches=0)
    assert trainer.current_epoch == 1


def test_min_steps_keeps_training_past_should_stop() -> None:
    class StopAtOnce(Counting):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.trainer.should_stop = True

    trainer, _ = _fit(StopAtOnce(), max_epochs=10, min_steps=5, limit_train_batches=2, limit_val_batches=0)
    assert trainer.global_step == 5  # stops at the first step boundary where min_steps is met (Lightning)


def test_max_time_stops_training() -> None:
    assert parse_max_time("00:01:02:03") == datetime.timedelta(hours=1, minutes=2, seconds=3)
    assert parse_max_time({"minutes": 2}) == datetime.timedelta(minutes=2)
    with pytest.raises(MisconfigurationException, match="DD:HH:MM:SS"):
        parse_max_time("1h")
    trainer, model = _fit(max_time={"seconds": 0}, limit_val_batches=0)
    assert trainer.global_step == 1


def test_fast_dev_run_runs_n_batches_everywhere_with_a_dummy_logger() -> None:
    trainer, model = _fit(fast_dev_run=True, logger=True)
    assert (len(model.train_batches), model.val_batches) == (1, 1)
    assert type(trainer.logger).__name__ == "DummyLogger" and trainer.log_dir is None  # Lightning
    trainer, model = _fit(fast_dev_run=3)
    assert (len(model.train_batches), model.val_batches, trainer.max_epochs) == (3, 3, 1)


def test_val_check_interval_float_and_int_and_check_val_every_n_epoch() -> None:
    _, model = _fit(max_epochs=1, limit_train_batches=8, limit_val_batches=1, val_check_interval=0.5,
                    num_sanity_val_steps=0)  # fmt: skip
    assert model.val_runs == [(0, 4), (0, 8)]
    _, model = _fit(max_epochs=1, limit_train_batches=6, limit_val_batches=1, val_check_interval=2,
                    num_sanity_val_steps=0)  # fmt: skip
    assert model.val_runs == [(0, 2), (0, 4), (0, 6)]
    _, model = _fit(max_epochs=4, limit_train_batches=2, limit_val_batches=1, check_val_every_n_epoch=2,
                    num_sanity_val_steps=0)  # fmt: skip
    assert model.val_runs == [(1, 4), (3, 8)]
    _, model = _fit(max_steps=6, limit_train_batches=4, limit_val_batches=1, val_check_interval=3,
                    check_val_every_n_epoch=None, num_sanity_val_steps=0)  # fmt: skip
    assert model.val_runs == [(0, 3), (1, 6)]
    with pytest.raises(MisconfigurationException, match="check_val_every_n_epoch=None"):
        _fit(max_epochs=1, limit_train_batches=2, val_check_interval=5)


@pytest.mark.parametrize(("steps", "expected"), [(0, 0), (2, 2), (-1, 5)])
def test_num_sanity_val_steps(steps, expected) -> None:
    class Model(Counting):
        pass

    sanity = []

    class Spy(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.sanity_checking:
                sanity.append(batch_idx)

    trainer, _ = _fit(Model(), max_epochs=1, limit_train_batches=1, limit_val_batches=5,
                      num_sanity_val_steps=steps, callbacks=[Spy()])  # fmt: skip
    assert len(sanity) == expected
    assert trainer.num_sanity_val_batches == [expected]  # Lightning 2.6 reports [0] when disabled


def test_overfit_batches_uses_the_same_unshuffled_batches_every_epoch() -> None:
    seen = []

    class Model(Counting):
        def training_step(self, batch, batch_idx):
            seen.append(batch.sum().item())
            return super().training_step(batch, batch_idx)

        def train_dataloader(self):
            return DataLoader(RandomDataset(32, 64), batch_size=2, shuffle=True)

    with pytest.warns(UserWarning, match="shuffling is turned off"):
        trainer, model = _fit(Model(), max_epochs=2, overfit_batches=3, num_sanity_val_steps=0)
    assert trainer.num_training_batches == 3 and trainer.num_val_batches == [3]
    assert seen[:3] == seen[3:]


def test_trainer_attributes_lightning_users_read() -> None:
    trainer, model = _fit(max_epochs=2, limit_train_batches=4, accumulate_grad_batches=2, limit_val_batches=2,
                          gradient_clip_val=1.0)  # fmt: skip
    assert trainer.state.finished and trainer.state.fn == "fit"
    assert trainer.estimated_stepping_batches == 4
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (1, 0, 0, 0)
    assert (trainer.num_nodes, trainer.num_devices, trainer.is_global_zero) == (1, 1, True)
    assert trainer.lightning_module is model and model.trainer is trainer
    assert trainer.accumulate_grad_batches == 2 and trainer.gradient_clip_val == 1.0
    assert trainer.gradient_clip_algorithm is None and trainer.check_val_every_n_epoch == 1
    assert trainer.precision == "32-true" and trainer.max_epochs == 2
    assert trainer.lr_scheduler_configs[0].interval == "epoch"
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)
    assert trainer.checkpoint_callback is None and trainer.early_stopping_callback is None
    assert trainer.logger is None and trainer.loggers == []
    assert not trainer.sanity_checking and not trainer.training
    trainer.should_stop = True
    assert trainer.should_stop


def test_legacy_flags_are_translated_with_a_warning_naming_the_new_spelling() -> None:
    with pytest.warns(DeprecationWarning, match="use max_epochs instead"):
        trainer = pl.Trainer(max_nb_epochs=2, **TRAINER_QUIET)
    assert trainer.max_epochs == 2
    cases = {
        "gradient_clip": ("gradient_clip_val", 0.5, "gradient_clip_val"),
        "train_percent_check": ("limit_train_batches", 0.5, "limit_train_batches"),
        "val_percent_check": ("limit_val_batches", 0.5, "limit_val_batches"),
        "test_percent_check": ("limit_test_batches", 0.5, "limit_test_batches"),
        "overfit_pct": ("overfit_batches", 0.5, "overfit_batches"),
        "min_nb_epochs": ("min_epochs", 2, "min_epochs"),
        "print_nan_grads": ("detect_anomaly", True, "detect_anomaly"),
    }
    for old, (new, value, attr) in cases.items():
        with pytest.warns(DeprecationWarning, match=f"use {new}"):
            trainer = pl.Trainer(**{old: value}, **TRAINER_QUIET)
        assert getattr(trainer, attr) == value, old
    with pytest.warns(DeprecationWarning, match="accelerator='gpu'"):
        trainer = pl.Trainer(gpus=0, **TRAINER_QUIET)
    assert trainer.strategy.root_device.type == "cpu"
    with pytest.warns(DeprecationWarning, match="num_nodes"):
        pl.Trainer(nb_gpu_nodes=1, **TRAINER_QUIET)
    with pytest.warns(DeprecationWarning, match="strategy"):
        pl.Trainer(distributed_backend="auto", **TRAINER_QUIET)
    with pytest.warns(DeprecationWarning, match="enable_progress_bar"):
        pl.Trainer(show_progress_bar=False, logger=False, enable_model_summary=False, enable_checkpointing=False)
    with pytest.warns(DeprecationWarning, match="enable_checkpointing"):
        trainer = pl.Trainer(checkpoint_callback=False, logger=False, enable_progress_bar=False,
                             enable_model_summary=False)  # fmt: skip
    assert trainer.checkpoint_callback is None


def test_track_grad_norm_logs_total_and_per_parameter_norms() -> None:
    with pytest.warns(DeprecationWarning, match="track_grad_norm"):
        trainer = pl.Trainer(track_grad_norm=2, max_steps=1, limit_val_batches=0, **TRAINER_QUIET)
    trainer.fit(BoringModel())
    keys = set(trainer.callback_metrics)
    assert {"grad_2.0_norm_total", "grad_2.0_norm/layer.weight", "grad_2.0_norm/layer.bias"} <= keys


def test_resume_from_checkpoint_flag_becomes_fit_ckpt_path(tmp_path) -> None:
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **TRAINER_QUIET)
    trainer.fit(BoringModel())
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    with pytest.warns(DeprecationWarning, match="ckpt_path"):
        resumed = pl.Trainer(resume_from_checkpoint=str(path), max_steps=3, limit_val_batches=0, **TRAINER_QUIET)
    resumed.fit(BoringModel())
    assert resumed.ckpt_path == str(path)
    assert resumed.global_step == 3


def test_iterable_dataset_without_length_validates_and_steps_epoch_schedulers_at_its_end() -> None:
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(torch.randn(6, 32))

    class Model(Counting):
        def train_dataloader(self):
            return DataLoader(Stream(), batch_size=2)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    trainer, model = _fit(Model(), max_epochs=2, limit_val_batches=1, num_sanity_val_steps=0)
    assert trainer.num_training_batches == float("inf")
    assert trainer.global_step == 6 and model.val_runs == [(0, 3), (1, 6)]
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.25


def test_loop_limits_resolve_when_fit_starts_like_lightning() -> None:
    from fulmen.runtime.trainer_flags import parse_loop_limits

    assert parse_loop_limits(None, -1, None, None, False) == (0, 1000)
    assert parse_loop_limits(None, 10, None, None, False) == (0, -1)
    assert parse_loop_limits(3, -1, None, None, False) == (1, 1000)
    assert parse_loop_limits(None, -1, None, None, True) == (0, -1)
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **TRAINER_QUIET)
    assert (trainer.min_epochs, trainer.max_epochs) == (None, None)  # as given until fit starts
    trainer.fit(BoringModel())
    assert (trainer.min_epochs, trainer.max_epochs) == (0, -1)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"devices": -3}, "devices=-3"),
        ({"devices": 0}, "devices=0"),
        ({"devices": 2.5}, "devices=2.5"),
        ({"devices": "abc"}, "devices='abc'"),
        ({"devices": [0, -1]}, "devices=[0, -1]"),
        ({"num_nodes": 0}, "num_nodes=0"),
        ({"max_steps": -2}, "max_steps=-2"),
        ({"max_steps": "100"}, "max_steps='100'"),
        ({"max_epochs": "ten"}, "max_epochs='ten'"),
        ({"max_epochs": -2}, "max_epochs=-2"),
        ({"max_epochs": 1.5}, "max_epochs=1.5"),
        ({"min_epochs": -1}, "min_epochs=-1"),
        ({"min_steps": -5}, "min_steps=-5"),
    ],
)
def test_impossible_topology_and_loop_flags_are_refused_at_construction(flags, named) -> None:
    with pytest.raises(MisconfigurationException) as raised:
        pl.Trainer(**TRAINER_QUIET, **flags)
    message = str(raised.value)
    assert f"Trainer({named})" in message and "expected" in message and "\nHINT: " in message


@pytest.mark.parametrize(
    "flags",
    [{"devices": 1}, {"devices": -1}, {"devices": "1"}, {"devices": [0]}, {"devices": "auto"}, {"num_nodes": 1},
     {"max_epochs": -1}, {"max_epochs": 0}, {"max_epochs": None}, {"max_steps": -1}, {"max_steps": 0},
     {"min_epochs": 0}, {"min_steps": 3}],
)  # fmt: skip
def test_the_flag_values_lightning_accepts_still_construct(flags) -> None:
    pl.Trainer(**{"accelerator": "cpu", **TRAINER_QUIET, **flags})


def test_an_empty_train_loader_ends_fit_without_steps_instead_of_crashing_in_the_limit_hint() -> None:
    empty = DataLoader(RandomDataset(32, 0), batch_size=2)
    trainer = pl.Trainer(**TRAINER_QUIET, max_epochs=2)
    trainer.fit(BoringModel(), empty)
    assert trainer.global_step == 0 and trainer.num_training_batches == 0


@pytest.mark.parametrize(
    "flag",
    [
        {"enable_checkpointing": True},
        {"logger": True},
        {"enable_progress_bar": True},
        {"log_every_n_steps": 5},
        {"enable_model_summary": True},
        {"num_sanity_val_steps": 2},
        {"fast_dev_run": 1},
        {"detect_anomaly": True},
        {"profiler": "simple"},
    ],
)
def test_barebones_refuses_each_feature_it_turns_off(flag: dict) -> None:
    (name, value), = flag.items()
    with pytest.raises(ValueError, match=rf"(?s)Trainer\(barebones=True, {name}={value!r}\)` was passed.*HINT"):
        pl.Trainer(barebones=True, **flag)


def test_barebones_trains_with_the_extras_off_and_self_log_dropped_with_lightnings_warning() -> None:
    class Logs(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = self.loss(self(batch))
            self.log("loss", loss)
            return loss

    trainer = pl.Trainer(barebones=True, logger=False, num_sanity_val_steps=0, max_steps=2, limit_val_batches=0)
    assert trainer.barebones is True
    assert (trainer.loggers, trainer.callbacks, trainer.num_sanity_val_steps) == ([], [], 0)
    with pytest.warns(UserWarning, match=r"self.log\(\)` but `Trainer\(barebones=True\)`"):
        trainer.fit(Logs())
    assert trainer.global_step == 2
    assert "loss" not in trainer.callback_metrics
    assert pl.Trainer(**TRAINER_QUIET).barebones is False


class _HparamsRecorder(pl.loggers.Logger):
    """A logger that keeps what log_hyperparams received."""

    def __init__(self) -> None:
        super().__init__()
        self.hparams_logged: list[dict] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        self.hparams_logged.append(dict(params))

    def log_metrics(self, metrics, step=None) -> None:
        pass


@pytest.mark.parametrize("autolog", [True, False])
def test_enable_autolog_hparams_decides_whether_loggers_get_the_saved_hyperparameters(autolog: bool) -> None:
    class WithHparams(BoringModel):
        def __init__(self, lr: float = 0.5) -> None:
            super().__init__()
            self.save_hyperparameters()

    logger = _HparamsRecorder()
    quiet = {**TRAINER_QUIET, "logger": logger}
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, enable_autolog_hparams=autolog, **quiet)
    assert trainer.enable_autolog_hparams is autolog
    trainer.fit(WithHparams())
    assert logger.hparams_logged == ([{"lr": 0.5}] if autolog else [])


def test_model_registry_accepts_none_and_refuses_an_upload_target() -> None:
    pl.Trainer(model_registry=None, **TRAINER_QUIET)
    with pytest.raises(MisconfigurationException, match=r"(?s)model_registry='my-model'.*litmodels.*HINT"):
        pl.Trainer(model_registry="my-model", **TRAINER_QUIET)
