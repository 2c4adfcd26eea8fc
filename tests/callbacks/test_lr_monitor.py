"""LearningRateMonitor names and values, Lightning's conventions.

The names in ``test_names_for_param_groups_duplicates_and_custom_names`` are the ones PyTorch
Lightning 2.6.6's LearningRateMonitor gives the same optimizers (checked by hand).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from fulmen.callbacks.lr_monitor import LearningRateMonitor
from fulmen.errors import MisconfigurationException


class RecordingLogger:
    def __init__(self) -> None:
        self.records: list[tuple[dict[str, float], int]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.records.append((dict(metrics), step))


class Wrapped:
    """Like the Trainer's optimizer wrapper: the real optimizer is ``.optimizer``."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer


def _trainer(optimizers: list[torch.optim.Optimizer], configs: list[Any], every: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        loggers=[RecordingLogger()],
        optimizers=[Wrapped(o) for o in optimizers],
        lr_scheduler_configs=configs,
        callback_metrics={},
        global_step=0,
        log_every_n_steps=every,
        should_stop=False,
    )


def _params(n: int = 1) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(2)) for _ in range(n)]


def test_step_scheduler_logs_lr_per_step() -> None:
    opt = torch.optim.Adam(_params(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    trainer = _trainer([opt], [SimpleNamespace(scheduler=sched, interval="step", name=None)])
    cb = LearningRateMonitor()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    for step in range(3):
        trainer.global_step = step
        cb.on_train_batch_start(trainer, None, None, step)  # type: ignore[arg-type]
        opt.step()
        sched.step()
    assert cb.lrs == {"lr-Adam": pytest.approx([0.1, 0.05, 0.025])}
    assert trainer.loggers[0].records == [({"lr-Adam": 0.1}, 0), ({"lr-Adam": 0.05}, 1), ({"lr-Adam": 0.025}, 2)]
    assert float(trainer.callback_metrics["lr-Adam"]) == pytest.approx(0.025)


def test_epoch_scheduler_logs_at_epoch_start_only() -> None:
    opt = torch.optim.SGD(_params(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    trainer = _trainer([opt], [SimpleNamespace(scheduler=sched, interval="epoch", name=None)])
    cb = LearningRateMonitor()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    cb.on_train_batch_start(trainer, None, None, 0)  # type: ignore[arg-type]
    assert trainer.loggers[0].records == [({"lr-SGD": 1.0}, 0)]


def test_names_for_param_groups_duplicates_and_custom_names() -> None:
    two_groups = torch.optim.Adam([{"params": _params()}, {"params": _params(), "lr": 0.5}], lr=0.1)
    named_groups = torch.optim.SGD(
        [{"params": _params(), "name": "backbone"}, {"params": _params(), "name": "head"}], lr=0.1, momentum=0.9
    )
    second_adam = torch.optim.Adam(_params(), lr=0.2)
    custom = torch.optim.RMSprop(_params(), lr=0.3)
    configs = [SimpleNamespace(scheduler=torch.optim.lr_scheduler.StepLR(custom, 1), interval="epoch", name="my-lr")]
    trainer = _trainer([two_groups, named_groups, second_adam, custom], configs)
    cb = LearningRateMonitor(logging_interval="step", log_momentum=True, log_weight_decay=True)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    assert list(cb.lrs) == ["my-lr", "lr-Adam/pg1", "lr-Adam/pg2", "lr-SGD/backbone", "lr-SGD/head", "lr-Adam-1"]
    cb.on_train_batch_start(trainer, None, None, 0)  # type: ignore[arg-type]
    stats = trainer.loggers[0].records[0][0]
    assert stats["lr-Adam/pg2"] == 0.5
    assert stats["lr-Adam/pg1-momentum"] == 0.9  # betas[0]
    assert stats["lr-SGD/head-momentum"] == 0.9
    assert stats["lr-Adam-1-weight_decay"] == 0
    assert stats["my-lr"] == 0.3


def test_requires_a_logger_and_valid_interval() -> None:
    trainer = _trainer([torch.optim.SGD(_params(), lr=0.1)], [])
    trainer.loggers = []
    with pytest.raises(MisconfigurationException, match="has no logger"):
        LearningRateMonitor().on_train_start(trainer, None)  # type: ignore[arg-type]
    with pytest.raises(MisconfigurationException, match="logging_interval"):
        LearningRateMonitor(logging_interval="batch")  # type: ignore[arg-type]


def test_duplicate_param_group_names_rejected() -> None:
    opt = torch.optim.SGD([{"params": _params(), "name": "a"}, {"params": _params(), "name": "a"}], lr=0.1)
    with pytest.raises(MisconfigurationException, match="identical `name`"):
        LearningRateMonitor().on_train_start(_trainer([opt], []), None)  # type: ignore[arg-type]


def test_log_every_n_steps_respected() -> None:
    opt = torch.optim.SGD(_params(), lr=0.1)
    trainer = _trainer([opt], [], every=2)
    cb = LearningRateMonitor()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    for step in range(4):
        trainer.global_step = step
        cb.on_train_batch_start(trainer, None, None, step)  # type: ignore[arg-type]
    assert [step for _, step in trainer.loggers[0].records] == [1, 3]


def test_momentum_warning_for_optimizer_without_momentum() -> None:
    trainer = _trainer([torch.optim.Adagrad(_params(), lr=0.1)], [])
    with pytest.warns(RuntimeWarning, match="do not have momentum"):
        LearningRateMonitor(log_momentum=True).on_train_start(trainer, None)  # type: ignore[arg-type]


def test_real_fit_logs_lr_to_csv(tmp_path: Any) -> None:
    import csv

    from torch.utils.data import DataLoader, TensorDataset

    from fulmen.core.module import LightningModule
    from fulmen.loggers import CSVLogger
    from fulmen.runtime.trainer import Trainer

    class Model(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5), "interval": "step"}}

    logger = CSVLogger(tmp_path)
    trainer = Trainer(
        max_steps=4,
        callbacks=[LearningRateMonitor()],
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Model(), DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=4))
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("lr-SGD")]
    assert [(int(r["step"]), float(r["lr-SGD"])) for r in rows] == [(0, 1.0), (1, 0.5), (2, 0.25), (3, 0.125)]
