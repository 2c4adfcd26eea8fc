"""Preemption call sites: a stop request at a step boundary saves the resume checkpoint and
exits with PREEMPTED_EXIT_CODE; the next start in the same run directory resumes from it."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.runtime.resume_checkpoint import find_resume_checkpoint
from fulmen.runtime.preemption import PREEMPTED_EXIT_CODE
from tests.core.models import TRAINER_QUIET, regression_data


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class StopRequest(pl.Callback):
    """Acts like a SIGTERM arriving during the given step."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            trainer._preemption.request_stop(signal.SIGTERM)


def _loader() -> DataLoader:
    return DataLoader(regression_data(48), batch_size=8, shuffle=True)


def test_stop_request_saves_resume_checkpoint_exits_75_and_next_start_resumes(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    reference = Net()
    pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(reference, _loader())

    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    torch.manual_seed(0)
    handlers_before = signal.getsignal(signal.SIGTERM)
    trainer = pl.Trainer(max_epochs=2, callbacks=[StopRequest(at_step=4)], **TRAINER_QUIET)
    with pytest.raises(SystemExit) as exit_info:
        trainer.fit(Net(), _loader())
    assert exit_info.value.code == PREEMPTED_EXIT_CODE
    assert signal.getsignal(signal.SIGTERM) == handlers_before  # handlers restored after fit
    assert find_resume_checkpoint(tmp_path) is not None

    monkeypatch.delenv("FULMEN_RUN_DIR")
    early = pl.Trainer(max_steps=1, **TRAINER_QUIET)
    early.fit(Net(), _loader())
    early.save_checkpoint(tmp_path / "early.ckpt")
    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))

    torch.manual_seed(99)
    resumed = Net()
    trainer = pl.Trainer(max_epochs=2, **TRAINER_QUIET)
    trainer.fit(resumed, _loader(), ckpt_path=tmp_path / "early.ckpt")  # the run's resume checkpoint wins
    assert trainer.global_step == 12
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


class StopRequestAtBatch(pl.Callback):
    """Acts like a SIGTERM arriving while batch ``batch_idx`` of epoch ``epoch`` runs; records
    the batches that finished after it (the delay until the agreed stop)."""

    def __init__(self, epoch: int, batch_idx: int) -> None:
        self.at = (epoch, batch_idx)
        self.finished: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.finished.append((trainer.current_epoch, batch_idx))
        if (trainer.current_epoch, batch_idx) == self.at:
            trainer._preemption.request_stop(signal.SIGTERM)


ACCUMULATE = 3
BATCHES_PER_EPOCH = 7  # windows [0 1 2] [3 4 5] [6]: the last one is partial and ends with the epoch


def _accumulation_run(**trainer_kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=2, accumulate_grad_batches=ACCUMULATE, **TRAINER_QUIET, **trainer_kwargs)


def _accumulation_loader() -> DataLoader:
    return DataLoader(regression_data(8 * BATCHES_PER_EPOCH), batch_size=8, shuffle=True)


@pytest.mark.parametrize(
    ("signal_batch", "stop_batch"),
    [(3, 5), (4, 5), (5, 5), (6, 6)],
    ids=["1st-of-window", "2nd-of-window", "3rd-of-window", "partial-window-at-epoch-end"],
)
def test_stop_during_gradient_accumulation_waits_for_the_optimizer_step_and_resumes_exactly(
    tmp_path, monkeypatch, signal_batch: int, stop_batch: int
) -> None:
    torch.manual_seed(0)
    reference = Net()
    _accumulation_run().fit(reference, _accumulation_loader())

    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    torch.manual_seed(0)
    stop = StopRequestAtBatch(epoch=0, batch_idx=signal_batch)
    trainer = _accumulation_run(callbacks=[stop])
    with pytest.raises(SystemExit) as exit_info:
        trainer.fit(Net(), _accumulation_loader())
    assert exit_info.value.code == PREEMPTED_EXIT_CODE
    # the stop came at the end of the signal's accumulation window, after its optimizer step
    assert stop.finished[-1] == (0, stop_batch)
    assert trainer.global_step == stop_batch // ACCUMULATE + 1

    torch.manual_seed(99)
    resumed = Net()
    trainer = _accumulation_run()
    trainer.fit(resumed, _accumulation_loader())
    assert trainer.global_step == 2 * 3
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
