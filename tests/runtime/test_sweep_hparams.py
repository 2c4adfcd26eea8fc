"""A sweep trial's values reach the loggers' hyperparameters (TensorBoard's HParams tab)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.loggers import TensorBoardLogger
from fulmen.sweep import TRIAL_VARIABLE
from fulmen.sweep.space import Trial
from fulmen.sweep.trial import trial_environment
from tests.core.models import regression_data


class Net(pl.LightningModule):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path) -> TensorBoardLogger:
    logger = TensorBoardLogger(tmp_path)
    pl.Trainer(max_steps=2, logger=logger, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False).fit(Net(width=6), DataLoader(regression_data(16), batch_size=8))
    return logger


def test_a_trials_values_are_logged_with_the_modules_hyperparameters(tmp_path, monkeypatch) -> None:
    trial = Trial(2, (("lr", "0.01"), ("width", "6")))
    monkeypatch.setenv(TRIAL_VARIABLE, trial_environment(trial, str(tmp_path)))
    logger = _fit(tmp_path)
    assert dict(logger.hparams) == {"lr": 0.01, "width": 6}
    assert "lr: 0.01" in (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()


def test_outside_a_sweep_only_the_modules_hyperparameters_are_logged(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(TRIAL_VARIABLE, raising=False)
    assert dict(_fit(tmp_path).hparams) == {"width": 6}
