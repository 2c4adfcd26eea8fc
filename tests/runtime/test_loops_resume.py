"""Exact resume through the Trainer: a mid-epoch checkpoint continues with identical results."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.errors import CheckpointError
from tests.core.models import TRAINER_QUIET, regression_data


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SaveAndStop(pl.Callback):
    def __init__(self, path, at_step: int) -> None:
        self.path, self.at_step = path, at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            trainer.save_checkpoint(self.path)
            raise KeyboardInterrupt  # as abrupt as a kill: nothing after the save runs


def _loader() -> DataLoader:
    return DataLoader(regression_data(56), batch_size=8, shuffle=True)  # 7 batches, global-RNG shuffle


def _fit(model: Net, ckpt_path=None, callbacks=()) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=3, callbacks=list(callbacks), **TRAINER_QUIET)
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return trainer


def test_resume_from_a_mid_epoch_checkpoint_matches_an_uninterrupted_run(tmp_path) -> None:
    torch.manual_seed(0)
    full = Net()
    _fit(full)

    torch.manual_seed(0)
    first = Net()
    path = tmp_path / "mid.ckpt"
    try:
        _fit(first, callbacks=[SaveAndStop(path, at_step=10)])  # epoch 1, batch 3 of 7
    except KeyboardInterrupt:
        pass
    torch.manual_seed(1234)  # a new process: different RNG, different init
    resumed = Net()
    trainer = _fit(resumed, ckpt_path=path)

    assert trainer.global_step == 21
    assert first.losses + resumed.losses == full.losses
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_fit_loop_state_dict_has_the_progress_checkpoints_need() -> None:
    torch.manual_seed(0)
    trainer = pl.Trainer(max_steps=10, **TRAINER_QUIET)
    trainer.fit(Net(), _loader())
    state = trainer.fit_loop.state_dict()
    assert state["global_step"] == 10
    assert state["optimizer_steps"] == [10]
    assert state["epoch"] == 2  # max_steps ended epoch 1 mid-way; its end hooks ran (Lightning)
    assert {"epoch_start", "batches_done", "rng_at_save"} <= set(state["data"])


class Opaque:
    """A hyperparameter value that neither Lightning nor fulmen stores as plain data."""

    def __init__(self, value: float) -> None:
        self.value = value


class NetWithOpaqueHparams(Net):
    def __init__(self, extra: Opaque) -> None:
        super().__init__()
        self.save_hyperparameters()


def test_fit_resumes_a_checkpoint_with_pickled_objects_only_with_the_explicit_opt_in(tmp_path) -> None:
    trainer = pl.Trainer(max_steps=2, **TRAINER_QUIET)
    trainer.fit(NetWithOpaqueHparams(Opaque(0.5)), DataLoader(regression_data(32), batch_size=8))
    with pytest.warns(UserWarning, match=r"hparams\['extra'\]: .*Opaque(.|\n)*unsafe_full_unpickle=True"):
        trainer.save_checkpoint(tmp_path / "opaque.ckpt")
    # as Lightning writes it: the Namespace pickled as a Python object
    checkpoint = torch.load(tmp_path / "opaque.ckpt", weights_only=False)
    checkpoint["hyper_parameters"] = {"args": argparse.Namespace(lr=0.1)}
    torch.save(checkpoint, tmp_path / "lightning.ckpt")

    for name, blocked in (("opaque.ckpt", "Opaque"), ("lightning.ckpt", r"argparse\.Namespace")):
        with pytest.raises(CheckpointError, match=rf"{name}(.|\n)*{blocked}(.|\n)*trainer\.fit\(model, ckpt_path=\.\.\., unsafe_full_unpickle=True\)"):
            pl.Trainer(max_steps=4, **TRAINER_QUIET).fit(Net(), DataLoader(regression_data(32), batch_size=8),
                                                         ckpt_path=tmp_path / name)
        resumed = pl.Trainer(max_steps=4, **TRAINER_QUIET)
        resumed.fit(Net(), DataLoader(regression_data(32), batch_size=8), ckpt_path=tmp_path / name,
                    unsafe_full_unpickle=True)
        assert resumed.global_step == 4
