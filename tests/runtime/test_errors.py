"""Bad input gets a clear error (what was seen, what was expected, HINT), before training starts."""

from __future__ import annotations

import pytest
import torch

import fulmen as pl
from fulmen.errors import MisconfigurationException
from tests.core.models import TRAINER_QUIET, BoringModel


class Tracking(BoringModel):
    steps = 0

    def training_step(self, batch, batch_idx):
        type(self).steps += 1
        return super().training_step(batch, batch_idx)


def _fit(model) -> None:
    pl.Trainer(max_steps=2, limit_val_batches=0, **TRAINER_QUIET).fit(model)


def test_bad_configure_optimizers_return_fails_before_any_training_step() -> None:
    class Model(Tracking):
        def configure_optimizers(self):
            return "sgd"

    Model.steps = 0
    with pytest.raises(MisconfigurationException, match="configure_optimizers returned str.*\n.*HINT"):
        _fit(Model())
    assert Model.steps == 0


def test_scheduler_interval_typo_fails_before_training() -> None:
    class Model(Tracking):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.StepLR(opt, 1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epochs"}}

    Model.steps = 0
    with pytest.raises(MisconfigurationException, match="interval='epochs'.*Did you mean 'epoch'"):
        _fit(Model())
    assert Model.steps == 0


def test_missing_training_step_fails_before_data_is_loaded() -> None:
    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def train_dataloader(self):
            raise AssertionError("data must not be loaded")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(MisconfigurationException, match="does not define training_step.*\n.*HINT"):
        _fit(Model())


@pytest.mark.parametrize(
    ("returned", "match"),
    [
        ("loss", "training_step returned str; expected a loss tensor"),
        ({"los": 1}, "without a 'loss' key \\(keys: \\['los'\\]\\)"),
        (torch.ones(3, requires_grad=True), "tensor of shape \\(3,\\)"),
    ],
)
def test_invalid_training_step_returns_are_clear_errors(returned, match) -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            return returned

    with pytest.raises(MisconfigurationException, match=match):
        _fit(Model())


def test_dataloaders_plus_datamodule_is_an_error() -> None:
    model = BoringModel()
    loader = model.train_dataloader()
    with pytest.raises(MisconfigurationException, match="either dataloaders or datamodule"):
        pl.Trainer(max_steps=1, **TRAINER_QUIET).fit(model, loader, datamodule=pl.LightningDataModule())


def test_gradient_clipping_flag_with_manual_optimization_is_an_error() -> None:
    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(MisconfigurationException, match="self.clip_gradients"):
        pl.Trainer(max_steps=1, gradient_clip_val=1.0, **TRAINER_QUIET).fit(Manual())


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ({"gradient_clip_algorithm": "norms"}, "Did you mean 'norm'"),
        ({"accumulate_grad_batches": 0}, "expected an int >= 1"),
        ({"val_check_interval": 1.5}, "must be in \\(0.0, 1.0\\]"),
        ({"max_time": "soon"}, "DD:HH:MM:SS"),
        ({"precision": "4-bit"}, "expected one of"),
    ],
)
def test_bad_flag_values_fail_at_construction(flags, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        pl.Trainer(**flags, **TRAINER_QUIET)


def test_evaluation_without_a_step_or_without_data_is_a_clear_error() -> None:
    class NoTestStep(BoringModel):
        test_step = None

    class NoData(BoringModel):
        test_dataloader = None

    trainer = pl.Trainer(**TRAINER_QUIET)
    with pytest.raises(MisconfigurationException, match="NoTestStep.test_step, which is not defined"):
        trainer.test(NoTestStep(), verbose=False)
    with pytest.raises(MisconfigurationException, match="no test_dataloader\\(\\)"):
        trainer.test(NoData(), verbose=False)


def test_disabling_checkpointing_while_passing_a_checkpoint_callback_is_an_error() -> None:
    from fulmen.callbacks import ModelCheckpoint

    with pytest.raises(MisconfigurationException, match="enable_checkpointing=False"):
        pl.Trainer(enable_checkpointing=False, callbacks=[ModelCheckpoint()], logger=False)
