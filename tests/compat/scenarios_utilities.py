"""Compatibility scenarios about utilities a script uses directly: the model summary's numbers,
seed_everything, and LearningRateMonitor's metric names for several param groups, optimizers
and named schedulers.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import plain
from tests.compat.readers import csv_rows

_SUMMARY_FIELDS = (
    "layer_names", "layer_types", "in_sizes", "out_sizes", "param_nums", "total_parameters",
    "trainable_parameters", "total_layer_params", "model_size",
)  # fmt: skip


def _summary_module(pl: ModuleType) -> Any:
    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
            self.head = torch.nn.Linear(3, 1)
            self.frozen = torch.nn.Linear(3, 3)
            self.frozen.requires_grad_(False)
            self.example_input_array = torch.zeros(2, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.frozen(self.encoder(x)))

    return Net()


def model_summary(pl: ModuleType, root: Path) -> dict[str, Any]:
    """pl.utilities.model_summary.ModelSummary's per-layer and total numbers, max_depth 1 and 2,
    with example_input_array (In/Out sizes) and a frozen layer."""
    from importlib import import_module

    summary_cls = import_module(f"{pl.__name__}.utilities.model_summary").ModelSummary
    model = _summary_module(pl)
    out = {}
    for depth in (1, 2, -1):
        summary = summary_cls(model, max_depth=depth)
        out[f"max_depth_{depth}"] = {field: plain(getattr(summary, field, "<missing>")) for field in _SUMMARY_FIELDS}
    return out


def seed_everything(pl: ModuleType, root: Path) -> dict[str, Any]:
    """seed_everything's return value, PL_GLOBAL_SEED / PL_SEED_WORKERS, and the first numbers
    random, numpy and torch draw after it (the environment is restored afterwards)."""
    saved = {key: os.environ.get(key) for key in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        out = {}
        for name, kwargs in (("seed_123", {"seed": 123}), ("seed_7_workers", {"seed": 7, "workers": True})):
            returned = pl.seed_everything(**kwargs)
            out[name] = {
                "returned": returned,
                "env": {key: os.environ.get(key) for key in sorted(saved)},
                "draws": plain([random.random(), float(np.random.rand()), torch.rand(1).item()]),
            }
        for key in saved:
            os.environ.pop(key, None)
        out["no_seed_no_env"] = {"returned": pl.seed_everything()}
        return out
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _named_lr_module(pl: ModuleType, case: str) -> Any:
    class Scheduled(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            if case == "two_optimizers_manual":
                self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if case != "two_optimizers_manual":
                return super().training_step(batch, batch_idx)
            x, y = batch
            for optimizer in self.optimizers():
                optimizer.zero_grad()
                self.manual_backward(F.mse_loss(self(x), y))
                optimizer.step()
            return None

        def configure_optimizers(self) -> Any:
            weight, bias = [self.layer.weight], [self.layer.bias]
            if case == "param_groups":
                return torch.optim.SGD([{"params": weight}, {"params": bias, "lr": 0.01}], lr=0.1)
            if case == "named_scheduler":
                optimizer = torch.optim.Adam(self.parameters(), lr=0.1)
                scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
                return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "name": "my_lr"}}
            return [torch.optim.SGD(weight, lr=0.1), torch.optim.SGD(bias, lr=0.2)]

    return Scheduled()


def lr_monitor_names(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The columns LearningRateMonitor writes for two param groups, two optimizers of one
    class (manual optimization) and a named scheduler (1 epoch x 2 batches)."""
    out = {}
    for case in ("param_groups", "two_optimizers_manual", "named_scheduler"):
        logger = pl.loggers.CSVLogger(save_dir=str(root), name=case)
        monitor = pl.callbacks.LearningRateMonitor(logging_interval="step")
        flags = trainer_kwargs(str(root), max_epochs=1, logger=logger, callbacks=[monitor], log_every_n_steps=1)
        pl.Trainer(**flags).fit(_named_lr_module(pl, case), loader(4), loader(2, seed=1))
        header = csv_rows(Path(logger.log_dir) / "metrics.csv")[0]
        # every column but the step counters and the module's own val_loss: the monitor's names
        out[case] = sorted(column for column in header if column not in ("epoch", "step", "val_loss"))
    return out


def _global_flags() -> list[Any]:
    return [
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    ]


def deterministic_and_benchmark(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The global torch flags [deterministic, warn_only, cudnn.benchmark, cudnn.deterministic,
    CUBLAS_WORKSPACE_CONFIG] after Trainer(deterministic=..., benchmark=...) is built; the
    process's flags are restored afterwards."""
    saved = _global_flags()
    out = {}
    try:
        for name, flags in (
            ("defaults", {}),
            ("deterministic_true", {"deterministic": True}),
            ("deterministic_warn", {"deterministic": "warn"}),
            ("benchmark_true", {"benchmark": True}),
        ):
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = False
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
            pl.Trainer(**trainer_kwargs(str(root), **flags))
            out[name] = _global_flags()
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]
    return out


def datamodule_from_datasets(pl: ModuleType, root: Path) -> dict[str, Any]:
    """LightningDataModule.from_datasets: the loaders it builds (batch counts and sizes)."""
    from tests.compat.models import dataset

    make = getattr(pl.LightningDataModule, "from_datasets", None)
    if make is None:
        return {"from_datasets": "<missing>"}
    datamodule = make(train_dataset=dataset(6), val_dataset=dataset(4, seed=1), batch_size=4, num_workers=0)
    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()
    return {"from_datasets": {"train": [len(train), train.batch_size], "val": [len(val), val.batch_size]}}


def configure_callbacks_override(pl: ModuleType, root: Path) -> dict[str, Any]:
    """configure_callbacks returning a ModelCheckpoint and an EarlyStopping while the Trainer
    already has one of each: which instances end up in trainer.callbacks, in which order."""

    class Configured(base_module(pl)):
        def configure_callbacks(self) -> list[Any]:
            return [
                pl.callbacks.ModelCheckpoint(dirpath=str(root / "from_module"), monitor="val_loss"),
                pl.callbacks.EarlyStopping(monitor="val_loss", patience=7),
            ]

    trainer_callbacks = [
        pl.callbacks.EarlyStopping(monitor="val_loss", patience=1),
        pl.callbacks.ModelCheckpoint(dirpath=str(root / "from_trainer")),
    ]
    flags = trainer_kwargs(str(root), max_epochs=1, callbacks=trainer_callbacks, enable_checkpointing=True)
    trainer = pl.Trainer(**flags)
    trainer.fit(Configured(), loader(4), loader(2, seed=1))
    described = []
    for callback in trainer.callbacks:
        detail = getattr(callback, "monitor", None), getattr(callback, "patience", None)
        described.append([type(callback).__name__, *detail])
    return {"callbacks": described, "checkpoint_monitor": trainer.checkpoint_callback.monitor}


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "datamodule_from_datasets": datamodule_from_datasets,
    "configure_callbacks_override": configure_callbacks_override,
    "deterministic_and_benchmark": deterministic_and_benchmark,
    "model_summary": model_summary,
    "seed_everything": seed_everything,
    "lr_monitor_names": lr_monitor_names,
}
