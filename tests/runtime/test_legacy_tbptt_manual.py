"""Truncated BPTT under manual optimization (1.x), beyond the 1.9.5 scenario ``tbptt_manual``:
what the module gets per split, the missing-hiddens error, and the one warning per class."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.errors import MisconfigurationException


class Manual(pl.LightningModule):
    def __init__(self, return_hiddens: bool = True) -> None:
        super().__init__()
        self.truncated_bptt_steps = 2
        self.automatic_optimization = False
        self.rnn = torch.nn.GRU(1, 2, batch_first=True)
        self.return_hiddens = return_hiddens
        self.seen: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int, hiddens: Any) -> Any:
        (x,) = batch
        self.seen.append((batch_idx, x.shape[1], None if hiddens is None else hiddens.requires_grad))
        out, hiddens = self.rnn(x, hiddens)
        loss = out.pow(2).mean()
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return {"loss": loss, "hiddens": hiddens} if self.return_hiddens else loss

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(model: Manual, epochs: int = 1) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(4, 5, 1)), batch_size=2))
    return trainer


def test_each_split_gets_the_previous_detached_hiddens_and_none_at_every_batch_start() -> None:
    model = Manual()
    trainer = _fit(model)
    # 5 time steps in splits of 2, 2, 1; two batches; hiddens detached (no grad) between splits
    assert model.seen == [(0, 2, None), (0, 2, False), (0, 1, False), (1, 2, None), (1, 2, False), (1, 1, False)]
    assert trainer.global_step == 6  # the module's own optimizer steps, one per split


def test_a_split_without_hiddens_is_an_error_saying_what_to_return() -> None:
    with pytest.raises(MisconfigurationException, match="without 'hiddens'"):
        _fit(Manual(return_hiddens=False))


def test_the_legacy_warning_comes_once_per_class() -> None:
    class Fresh(Manual):
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(Fresh())
        _fit(Fresh())
    messages = [str(w.message) for w in caught if "truncated_bptt_steps with manual optimization" in str(w.message)]
    assert len(messages) == 1 and "split the batch along time in training_step yourself" in messages[0]
