"""Parity with plain PyTorch: same seed, model, data and optimizer -> bit-identical weights."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from tests.core.models import TRAINER_QUIET, regression_data


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))


class Regressor(pl.LightningModule):
    def __init__(self, accumulate: int = 1) -> None:
        super().__init__()
        self.net = _net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)}}


def _loader(seed: int) -> DataLoader:
    return DataLoader(regression_data(60), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))


def _hand_loop(epochs: int, accumulate: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    loader = _loader(1)
    net.train()
    for _ in range(epochs):
        n = len(loader)
        for i, (x, y) in enumerate(loader):
            if i % accumulate == 0:
                opt.zero_grad()
            loss = nn.functional.mse_loss(net(x), y)
            (loss / accumulate if accumulate > 1 else loss).backward()
            if (i + 1) % accumulate == 0 or i + 1 == n:
                opt.step()
        sched.step()
    return {k: v.clone() for k, v in net.state_dict().items()}


def _trainer_run(epochs: int, accumulate: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = Regressor()
    trainer = pl.Trainer(max_epochs=epochs, accumulate_grad_batches=accumulate, **TRAINER_QUIET)
    trainer.fit(model, _loader(1))
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_shuffled_multi_epoch_training_matches_a_hand_written_loop_bit_for_bit() -> None:
    expected = _hand_loop(epochs=4, accumulate=1)
    got = _trainer_run(epochs=4, accumulate=1)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_gradient_accumulation_matches_a_hand_written_loop_bit_for_bit() -> None:
    expected = _hand_loop(epochs=3, accumulate=3)
    got = _trainer_run(epochs=3, accumulate=3)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_optimizer_step_count_under_accumulation_matches_lightning() -> None:
    # 60 samples / 8 = 8 batches; accumulate 3 -> steps after batches 3, 6 and the last (8): 3 per epoch
    model = Regressor()
    trainer = pl.Trainer(max_epochs=2, accumulate_grad_batches=3, **TRAINER_QUIET)
    trainer.fit(model, _loader(1))
    assert trainer.num_training_batches == 8
    assert trainer.global_step == 6
    assert trainer.fit_loop.optimizer_steps == [6]


class RegressorWithValidation(Regressor):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))


def _trainer_run_with_validation(sanity_steps: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = RegressorWithValidation()
    trainer = pl.Trainer(max_epochs=2, num_sanity_val_steps=sanity_steps, **TRAINER_QUIET)
    trainer.fit(model, _loader(1), DataLoader(regression_data(16, seed=3), batch_size=8))
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_sanity_check_does_not_change_training() -> None:
    # Creating a DataLoader iterator draws a seed from the global RNG; Lightning runs the
    # sanity check inside isolate_rng() so dropout masks (and data order) stay the same.
    without = _trainer_run_with_validation(sanity_steps=0)
    with_sanity = _trainer_run_with_validation(sanity_steps=2)
    for key in without:
        assert torch.equal(without[key], with_sanity[key]), key
