"""StochasticWeightAveraging: the average it computes, BatchNorm's statistics epoch, exact resume,
its argument and configuration errors, and 1.x's ``Trainer(stochastic_weight_avg=True)``.

What Lightning 2.6 does with the same runs (lrs per epoch, weights) is compared in
tests/compat (scenario ``swa``).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import ModelCheckpoint, StochasticWeightAveraging
from fulmen.errors import MisconfigurationException

QUIET = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
         "logger": False, "enable_checkpointing": False}  # fmt: skip


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(8, 4, generator=generator), torch.randn(8, 1, generator=generator)),
                      batch_size=2)  # fmt: skip


class Regression(pl.LightningModule):
    def __init__(self, batch_norm: bool = False, schedulers: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.norm = torch.nn.BatchNorm1d(4) if batch_norm else torch.nn.Identity()
        self.layer = torch.nn.Linear(4, 1)
        self.schedulers = schedulers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.norm(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        if not self.schedulers:
            return optimizer
        schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, 1) for _ in range(self.schedulers)]
        return [optimizer], schedulers


class Snapshots(pl.Callback):
    """The module's parameters at every epoch start, after SWA's own hook (listed after it)."""

    def __init__(self) -> None:
        self.at_start: dict[int, list[torch.Tensor]] = {}
        self.lrs: dict[int, float] = {}

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.at_start[trainer.current_epoch] = [p.detach().clone() for p in pl_module.parameters()]
        self.lrs[trainer.current_epoch] = trainer.optimizers[0].param_groups[0]["lr"]


def _fit(tmp_path: Path, model: pl.LightningModule, callbacks: list[Any], epochs: int = 4,
         ckpt_path: str | None = None, **flags: Any) -> pl.Trainer:  # fmt: skip
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=epochs, callbacks=callbacks, **{**QUIET, **flags})
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return trainer


def test_the_module_ends_with_the_mean_of_the_weights_at_each_swa_epoch_start(tmp_path: Path) -> None:
    model, snapshots = Regression(), Snapshots()
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
    _fit(tmp_path, model, [swa, snapshots])
    # swa_epoch_start=2 (1-based) -> epochs 1..3 (0-based) are averaged, each at its start
    expected = [torch.stack(group).mean(0) for group in zip(*(snapshots.at_start[e] for e in (1, 2, 3)))]
    for param, mean in zip(model.parameters(), expected):
        torch.testing.assert_close(param.detach(), mean)
    assert int(swa.n_averaged) == 3
    assert snapshots.lrs[0] == 0.1 and snapshots.lrs[3] == pytest.approx(0.05)  # annealed to swa_lrs


def test_batch_norm_epoch_recomputes_statistics_for_the_averaged_weights_and_restores_the_settings(
    tmp_path: Path,
) -> None:
    model = Regression(batch_norm=True)
    momentum = model.norm.momentum
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2)
    trainer = _fit(tmp_path, model, [swa], accumulate_grad_batches=1)
    assert trainer.current_epoch == 5  # one more epoch than max_epochs=4: the statistics epoch
    assert trainer.max_epochs == 4 and trainer.accumulate_grad_batches == 1
    assert trainer.optimization.skip_backward is False
    assert model.norm.momentum == momentum
    # the statistics are the plain mean over one pass, as torch's update_bn computes them
    reference = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(((x,) for x, _ in _loader()), reference.norm)
    torch.testing.assert_close(model.norm.running_mean, reference.norm.running_mean)
    torch.testing.assert_close(model.norm.running_var, reference.norm.running_var)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_resumed_from_a_checkpoint_inside_the_swa_phase_ends_with_the_uninterrupted_weights(
    tmp_path: Path, batch_norm: bool
) -> None:
    def swa() -> StochasticWeightAveraging:
        return StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)

    every_epoch = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, every_n_epochs=1,
                                  filename="{epoch}")  # fmt: skip
    whole = Regression(batch_norm)
    _fit(tmp_path / "whole", whole, [swa(), every_epoch], enable_checkpointing=True)
    resumed = Regression(batch_norm)
    trainer = _fit(tmp_path / "resumed", resumed, [swa()], ckpt_path=str(tmp_path / "ckpts" / "epoch=2.ckpt"))
    assert trainer.lr_scheduler_configs[0].scheduler.__class__.__name__ == "SWALR"
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"swa_lrs": 0.1, "swa_epoch_start": 0}, r"swa_epoch_start should be a >0 integer.*\nHINT: got 0"),
        ({"swa_lrs": 0.1, "swa_epoch_start": 1.5}, r"or a float between 0 and 1"),
        ({"swa_lrs": 1}, r"The `swa_lrs` should a positive float.*\nHINT: .*write 1\.0"),
        ({"swa_lrs": [0.1, 0.0]}, r"list of positive floats"),
        ({"swa_lrs": 0.1, "avg_fn": "mean"}, r"The `avg_fn` should be callable"),
        ({"swa_lrs": 0.1, "device": 0}, r"device is expected to be a torch.device or a str. Found 0"),
    ],
)
def test_bad_arguments_are_refused_with_lightnings_message(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        StochasticWeightAveraging(**kwargs)


def test_more_than_one_scheduler_is_refused_at_fit_start(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match="more than 1 `lr_scheduler`"):
        _fit(tmp_path, Regression(schedulers=2), [StochasticWeightAveraging(swa_lrs=0.1)])


def test_a_fractional_start_without_an_epoch_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match="not supported when `max_epochs=-1`"):
        _fit(tmp_path, Regression(), [StochasticWeightAveraging(swa_lrs=0.1)], epochs=-1, max_steps=3)


def test_legacy_trainer_flag_adds_swa_at_the_optimizers_learning_rate(tmp_path: Path) -> None:
    snapshots = Snapshots()
    with pytest.warns(DeprecationWarning, match=r"use callbacks=\[StochasticWeightAveraging\(swa_lrs=\.\.\.\)\]"):
        trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=5, stochastic_weight_avg=True,
                             callbacks=[snapshots], **QUIET)  # fmt: skip
    (swa,) = [cb for cb in trainer.callbacks if isinstance(cb, StochasticWeightAveraging)]
    model = Regression()
    trainer.fit(model, _loader())
    assert list(snapshots.lrs.values()) == pytest.approx([0.1] * 5)  # SWALR anneals to the lr it already has
    assert int(swa.n_averaged) == 2  # swa_epoch_start=0.8 of 5 epochs: epochs 3 and 4 (0-based)
    expected = [torch.stack(group).mean(0) for group in zip(snapshots.at_start[3], snapshots.at_start[4])]
    for param, mean in zip(model.parameters(), expected):
        torch.testing.assert_close(param.detach(), mean)


def test_legacy_trainer_flag_keeps_an_swa_callback_already_given(tmp_path: Path) -> None:
    given = StochasticWeightAveraging(swa_lrs=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        trainer = pl.Trainer(default_root_dir=tmp_path, stochastic_weight_avg=True, callbacks=[given], **QUIET)
    assert [cb for cb in trainer.callbacks if isinstance(cb, StochasticWeightAveraging)] == [given]
