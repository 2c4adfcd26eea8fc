"""Lightning 2.6's Trainer members that trainer_properties.SURFACE adds: each read where a user reads it."""

from __future__ import annotations

from typing import Any

import pytest
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.runtime.trainer_properties import SURFACE, install_surface
from tests.core.models import TRAINER_QUIET, BoringModel, RandomDataset


class Recorder(pl.Callback):
    """What a callback sees of the new members at each point of a run."""

    def __init__(self) -> None:
        self.last_batch: list[bool] = []
        self.at_epoch_start: list[bool] = []
        self.evaluating: dict[str, bool] = {}

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.at_epoch_start.append(trainer.is_last_batch)
        self.evaluating["train"] = trainer.evaluating

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.last_batch.append(trainer.is_last_batch)

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self.evaluating["sanity"] = trainer.evaluating

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self.evaluating.setdefault("validate", trainer.evaluating)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self.evaluating["test"] = trainer.evaluating

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self.evaluating["predict"] = trainer.evaluating


def test_is_last_batch_is_set_before_each_batchs_hooks_and_kept_until_the_next_batch() -> None:
    recorder = Recorder()
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, callbacks=[recorder], **TRAINER_QUIET)
    assert trainer.is_last_batch is False
    trainer.fit(BoringModel())
    assert recorder.last_batch == [False, False, True] * 2
    assert recorder.at_epoch_start == [False, True]  # Lightning: still the previous epoch's last batch
    assert trainer.is_last_batch is True  # Lightning keeps the finished epoch's value


def test_evaluating_during_sanity_check_validation_and_test_only() -> None:
    recorder = Recorder()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, limit_test_batches=1,
                         limit_predict_batches=1, callbacks=[recorder], **TRAINER_QUIET)  # fmt: skip
    model = BoringModel()
    loader = DataLoader(RandomDataset(32, 8), batch_size=2)
    trainer.fit(model, val_dataloaders=loader)
    trainer.test(model, dataloaders=loader, verbose=False)
    trainer.predict(model, dataloaders=loader)
    assert recorder.evaluating == {"sanity": True, "validate": True, "train": False, "test": True, "predict": False}
    assert trainer.evaluating is False  # nothing runs


def test_test_and_predict_dataloaders_are_the_running_or_last_runs_loaders() -> None:
    seen = {}

    class Probe(pl.Callback):
        def on_test_start(self, trainer: Any, pl_module: Any) -> None:
            seen["test"] = trainer.test_dataloaders

    trainer = pl.Trainer(limit_test_batches=1, limit_predict_batches=1, callbacks=[Probe()], **TRAINER_QUIET)
    model = BoringModel()
    assert trainer.test_dataloaders is None and trainer.predict_dataloaders is None
    first, second = (DataLoader(RandomDataset(32, 4), batch_size=2) for _ in range(2))
    trainer.test(model, dataloaders=first, verbose=False)
    assert seen["test"] is trainer.test_dataloaders
    assert trainer.test_dataloaders.dataset is first.dataset
    trainer.predict(model, dataloaders=[first, second])
    assert [loader.dataset for loader in trainer.predict_dataloaders] == [first.dataset, second.dataset]
    assert trainer.test_dataloaders is None  # Lightning: a later run forgets the test loaders


def test_scaler_and_distributed_sampler_kwargs_on_one_cpu_process() -> None:
    trainer = pl.Trainer(**TRAINER_QUIET)
    assert trainer.scaler is None  # no 16-mixed on CUDA: no GradScaler
    assert trainer.distributed_sampler_kwargs is None  # Lightning: None for a single-device strategy


def test_read_only_members_refuse_writes() -> None:
    trainer = pl.Trainer(**TRAINER_QUIET)
    for name in ("is_last_batch", "evaluating", "test_dataloaders", "scaler"):
        with pytest.raises(AttributeError):
            setattr(trainer, name, None)


def test_install_surface_refuses_a_name_the_class_defines_itself() -> None:
    class Clashing:
        max_epochs = 3

    with pytest.raises(TypeError, match="Clashing.max_epochs is defined twice"):
        install_surface(Clashing)
    assert all(pl.Trainer.__dict__[name] is attribute for name, attribute in SURFACE.items())
