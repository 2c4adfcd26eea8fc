"""Trainer entry points: defaults (loggers, callbacks, log dir), datamodules, validate/test/predict, legacy hooks."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader

import fulmen as pl
from tests.core.models import TRAINER_QUIET, BoringModel, RandomDataset


def test_default_trainer_adds_logger_progress_bar_summary_and_checkpoint(tmp_path) -> None:
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    names = [type(cb).__name__ for cb in trainer.callbacks]
    assert {"TQDMProgressBar", "ModelSummary", "ModelCheckpoint"} <= set(names)
    assert names[-1] == "ModelCheckpoint"  # checkpoint callbacks run last
    class Logged(BoringModel):
        def __init__(self, lr=0.1):
            super().__init__()
            self.save_hyperparameters()

        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("loss", out["loss"])
            return out

    trainer.fit(Logged())
    assert type(trainer.logger).__name__ == "TensorBoardLogger"
    assert (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").exists()
    log_dir = tmp_path / "lightning_logs" / "version_0"
    assert trainer.log_dir == os.fspath(log_dir)
    assert any(p.name.startswith("events.out.tfevents") for p in log_dir.iterdir())
    assert [p.name for p in (log_dir / "checkpoints").iterdir()] == ["epoch=0-step=2.ckpt"]
    second = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                        enable_progress_bar=False)  # fmt: skip
    second.fit(BoringModel())
    assert second.log_dir == os.fspath(tmp_path / "lightning_logs" / "version_1")


class DataModule(pl.LightningDataModule):
    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def prepare_data(self):
        self.calls.append("dm.prepare_data")

    def setup(self, stage):
        self.calls.append(f"dm.setup:{stage}")
        self.data = RandomDataset(32, 16)

    def teardown(self, stage):
        self.calls.append(f"dm.teardown:{stage}")

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=4)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=4)

    def test_dataloader(self):
        return DataLoader(self.data, batch_size=8)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        self.calls.append("dm.on_after_batch_transfer")
        return batch * 0


def test_datamodule_hooks_run_before_the_module_and_supply_the_data() -> None:
    calls: list[str] = []

    class Model(BoringModel):
        def prepare_data(self):
            calls.append("model.prepare_data")

        def setup(self, stage):
            calls.append(f"model.setup:{stage}")

        def training_step(self, batch, batch_idx):
            assert torch.count_nonzero(batch) == 0  # the datamodule's transfer hook ran
            return super().training_step(batch, batch_idx)

    dm = DataModule(calls)
    model = Model()
    trainer = pl.Trainer(max_epochs=1, num_sanity_val_steps=0, **TRAINER_QUIET)
    trainer.fit(model, datamodule=dm)
    assert calls[:3] == ["dm.prepare_data", "model.prepare_data", "dm.setup:fit"]
    assert calls[3] == "model.setup:fit" and calls[-1] == "dm.teardown:fit"
    assert trainer.datamodule is dm and trainer.num_training_batches == 4
    calls.clear()
    with pytest.raises(ValueError, match='ckpt_path="best" is set but ModelCheckpoint is not configured'):
        trainer.test(datamodule=dm, verbose=False)  # no model: Lightning tests the best checkpoint
    results = trainer.test(model, datamodule=dm, verbose=False)
    assert trainer.num_test_batches == [2] and results == [{}]
    assert "dm.setup:test" in calls


def test_validate_test_and_predict_entry_points() -> None:
    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.loss(self(batch)))

        def test_step(self, batch, batch_idx):
            self.log("test_loss", self.loss(self(batch)))

    model = Model()
    trainer = pl.Trainer(limit_val_batches=3, limit_test_batches=2, limit_predict_batches=5, **TRAINER_QUIET)
    val = trainer.validate(model, verbose=False)
    assert val[0]["val_loss"] == pytest.approx(trainer.callback_metrics["val_loss"].item())
    test = trainer.test(model, verbose=False)
    assert list(val[0]) == ["val_loss"] and list(test[0]) == ["test_loss"]
    assert list(trainer.callback_metrics) == ["test_loss"]  # each run reports its own metrics
    predictions = trainer.predict(model)
    assert len(predictions) == 5 and predictions[0].shape == (2, 2)
    two = trainer.predict(model, dataloaders=[DataLoader(RandomDataset(32, 4), batch_size=2)] * 2)
    assert [len(p) for p in two] == [2, 2]
    assert trainer.predict(model, return_predictions=False) is None
    assert model.training  # evaluation restores train mode


def test_test_without_a_model_uses_the_best_checkpoint(tmp_path) -> None:
    from fulmen.callbacks import ModelCheckpoint

    class Model(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.loss(self(batch)))

        def test_step(self, batch, batch_idx):
            self.log("test_loss", self.loss(self(batch)))

    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=2,
                         callbacks=[ModelCheckpoint(monitor="val_loss")], logger=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(Model())
    trainer.test(verbose=False)
    assert trainer.ckpt_path == trainer.checkpoint_callback.best_model_path


def test_legacy_hooks_are_called_with_collected_outputs_and_warn() -> None:
    seen: dict[str, object] = {}

    class Legacy(BoringModel):
        def tng_dataloader(self):
            return DataLoader(RandomDataset(32, 8), batch_size=4)

        def training_step_end(self, out):
            seen.setdefault("training_step_end", 0)
            seen["training_step_end"] += 1
            return out

        def training_epoch_end(self, outputs):
            seen["training_epoch_end"] = len(outputs)

        def validation_step_end(self, out):
            return {"wrapped": out}

        def validation_epoch_end(self, outputs):
            seen["validation_epoch_end"] = outputs

        def validation_end(self, outputs):
            seen["validation_end"] = len(outputs)

        def test_epoch_end(self, outputs):
            seen["test_epoch_end"] = len(outputs)

    Legacy.train_dataloader = None  # only the legacy name supplies training data
    model = Legacy()
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=2, num_sanity_val_steps=0, limit_test_batches=3,
                         **TRAINER_QUIET)  # fmt: skip
    with pytest.warns(DeprecationWarning, match="training_epoch_end is a legacy hook.*on_train_epoch_end"):
        trainer.fit(model)
    trainer.test(model, verbose=False)
    assert seen["training_step_end"] == 2 and seen["training_epoch_end"] == 2
    assert seen["validation_end"] == 2 and seen["test_epoch_end"] == 3
    assert all(set(o) == {"wrapped"} for o in seen["validation_epoch_end"])


def test_callbacks_from_configure_callbacks_replace_same_type_trainer_callbacks() -> None:
    class Marker(pl.Callback):
        def __init__(self, tag):
            self.tag = tag

    class Model(BoringModel):
        def configure_callbacks(self):
            return [Marker("model")]

    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, callbacks=[Marker("trainer")], **TRAINER_QUIET)
    trainer.fit(Model())
    assert [cb.tag for cb in trainer.callbacks if isinstance(cb, Marker)] == ["model"]


def test_exception_in_training_calls_on_exception_and_marks_the_state() -> None:
    seen = []

    class Spy(pl.Callback):
        def on_exception(self, trainer, pl_module, exception):
            seen.append(type(exception).__name__)

    class Boom(BoringModel):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("boom")

    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, callbacks=[Spy()], **TRAINER_QUIET)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Boom())
    assert seen == ["RuntimeError"] and trainer.state.status == "interrupted"


def test_barebones_and_unimplemented_flags() -> None:
    trainer = pl.Trainer(barebones=True)
    assert trainer.loggers == [] and trainer.callbacks == []
    with pytest.warns(UserWarning, match="profiler=.*no effect"):
        pl.Trainer(profiler="simple", **TRAINER_QUIET)


def test_fit_rejects_something_that_is_not_a_lightning_module() -> None:
    with pytest.raises(TypeError, match="expected a LightningModule, got Linear"):
        pl.Trainer(**TRAINER_QUIET).fit(torch.nn.Linear(2, 2))


def test_several_training_loaders_are_combined_max_size_cycle() -> None:
    from fulmen.runtime.combined_loader import CombinedLoader

    seen = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            seen.append((batch["a"].shape[0], batch["b"].shape[0]))
            return super().training_step(batch["a"], batch_idx)

    loaders = {"a": DataLoader(RandomDataset(32, 8), batch_size=2), "b": DataLoader(RandomDataset(32, 6), batch_size=3)}
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, **TRAINER_QUIET)
    trainer.fit(Model(), loaders)
    assert trainer.num_training_batches == 4 and seen == [(2, 3)] * 4  # "b" (2 batches) cycled
    pairs = list(CombinedLoader([[1, 2, 3], [10]]))
    assert pairs == [[1, 10], [2, 10], [3, 10]]


def test_evaluation_restores_each_submodules_mode_and_fit_validation_avoids_inference_mode() -> None:
    seen = []

    class Model(BoringModel):
        def __init__(self):
            super().__init__()
            self.frozen = torch.nn.BatchNorm1d(2)
            self.frozen.eval()  # the user wants this one in eval mode throughout

        def training_step(self, batch, batch_idx):
            seen.append(("train", self.frozen.training, torch.is_inference_mode_enabled()))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            seen.append(("val", self.training, torch.is_inference_mode_enabled()))

    model = Model()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
                         **TRAINER_QUIET)  # fmt: skip
    trainer.fit(model)
    trainer.validate(model, verbose=False)
    assert seen == [("train", False, False), ("val", False, False), ("val", False, True)]
    assert model.training and not model.frozen.training
