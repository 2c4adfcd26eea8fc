"""Loggers with Lightning's names (``pl.loggers.*``); tensorboard, mlflow and wandb load only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen._lazy import lazy_getattr

_TABLE = {
    "Logger": "fulmen.loggers.logger",
    "TensorBoardLogger": "fulmen.loggers.tensorboard",
    "CSVLogger": "fulmen.loggers.csv_logs",
    "MLFlowLogger": "fulmen.loggers.mlflow",
    "WandbLogger": "fulmen.loggers.wandb",
}
__all__ = list(_TABLE)
__getattr__ = lazy_getattr(__name__, _TABLE)

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.loggers.csv_logs import CSVLogger
    from fulmen.loggers.logger import Logger
    from fulmen.loggers.mlflow import MLFlowLogger
    from fulmen.loggers.tensorboard import TensorBoardLogger
    from fulmen.loggers.wandb import WandbLogger
