"""``result.json``: rank 0 writes how a fit ended into the run dir (what a sweep ranks trials by)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.callbacks import ModelCheckpoint
from fulmen.jobs.run_result import RESULT_FILE, read_result
from tests.core.models import TRAINER_QUIET, regression_data


class Net(pl.LightningModule):
    def __init__(self, fail_at_step: int | None = None) -> None:
        super().__init__()
        self.net = nn.Linear(8, 1)
        self.fail_at_step = fail_at_step

    def training_step(self, batch, batch_idx):
        if self.fail_at_step is not None and self.global_step == self.fail_at_step:
            raise RuntimeError("boom")
        loss = nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _loader() -> DataLoader:
    return DataLoader(regression_data(32), batch_size=8)


def test_a_finished_fit_writes_its_final_metrics_and_best_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", mode="min")
    trainer = pl.Trainer(max_epochs=2, callbacks=[checkpoint], **{**TRAINER_QUIET, "enable_checkpointing": True})
    trainer.fit(Net(), _loader(), _loader())
    result = read_result(tmp_path)
    assert result is not None
    assert (tmp_path / RESULT_FILE).stat().st_mode & 0o777 == 0o600
    assert result["state"] == "finished"
    assert (result["global_step"], result["epoch"]) == (trainer.global_step, trainer.current_epoch) == (8, 2)
    assert set(result["metrics"]) == set(trainer.callback_metrics) == {"train_loss", "val_loss"}
    assert result["metrics"]["val_loss"] == pytest.approx(float(trainer.callback_metrics["val_loss"]))
    assert result["checkpoint"] == {
        "monitor": "val_loss", "mode": "min",
        "best_model_score": pytest.approx(float(checkpoint.best_model_score)),
        "best_model_path": checkpoint.best_model_path,
    }
    assert math.isfinite(result["checkpoint"]["best_model_score"])


def test_a_failed_fit_writes_interrupted_and_a_run_without_run_dir_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(Net(fail_at_step=3), _loader())
    result = json.loads((tmp_path / RESULT_FILE).read_text())
    assert (result["state"], result["global_step"]) == ("interrupted", 3)

    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    monkeypatch.delenv("FULMEN_RUN_DIR")
    monkeypatch.chdir(elsewhere)
    pl.Trainer(max_epochs=1, **TRAINER_QUIET).fit(Net(), _loader())
    assert not list(elsewhere.rglob(RESULT_FILE))


def test_the_first_loggers_dir_is_kept_so_the_report_finds_its_metrics(tmp_path, monkeypatch) -> None:
    from fulmen.loggers import CSVLogger

    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path)
    trainer = pl.Trainer(max_epochs=1, **{**TRAINER_QUIET, "logger": CSVLogger("logs")})
    trainer.fit(Net(), _loader())
    result = read_result(tmp_path / "run")
    assert result["log_dir"] == str((tmp_path / "logs" / "lightning_logs" / "version_0").resolve())
    pl.Trainer(max_epochs=1, **TRAINER_QUIET).fit(Net(), _loader())
    assert read_result(tmp_path / "run")["log_dir"] is None  # no logger: no log dir (not the whole root)
