"""Callbacks with Lightning's names (``pl.callbacks.*``); each loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen._lazy import lazy_getattr

_TABLE = {
    "Callback": "fulmen.core.callback",
    "ModelCheckpoint": "fulmen.callbacks.model_checkpoint",
    "EarlyStopping": "fulmen.callbacks.early_stopping",
    "LearningRateMonitor": "fulmen.callbacks.lr_monitor",
    "GradientAccumulationScheduler": "fulmen.callbacks.gradient_accumulation_scheduler",
    "ModelSummary": "fulmen.callbacks.model_summary",
    "ProgressBar": "fulmen.callbacks.progress",
    "TQDMProgressBar": "fulmen.callbacks.progress",
    "StochasticWeightAveraging": "fulmen.callbacks.stochastic_weight_avg",
    "Timer": "fulmen.callbacks.timer",
    "BaseFinetuning": "fulmen.callbacks.finetuning",
    "BackboneFinetuning": "fulmen.callbacks.finetuning",
    "Checkpoint": "fulmen.callbacks.checkpoint",
    "DeviceStatsMonitor": "fulmen.callbacks.device_stats_monitor",
    "OnExceptionCheckpoint": "fulmen.callbacks.on_exception_checkpoint",
    "RichProgressBar": "fulmen.callbacks.rich_progress",
    "RichModelSummary": "fulmen.callbacks.rich_model_summary",
    "LearningRateFinder": "fulmen.callbacks.lr_finder",
    "BatchSizeFinder": "fulmen.callbacks.batch_size_finder",
}
__all__ = list(_TABLE)
__getattr__ = lazy_getattr(__name__, _TABLE)

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.callbacks.batch_size_finder import BatchSizeFinder
    from fulmen.callbacks.checkpoint import Checkpoint
    from fulmen.callbacks.device_stats_monitor import DeviceStatsMonitor
    from fulmen.callbacks.early_stopping import EarlyStopping
    from fulmen.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
    from fulmen.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
    from fulmen.callbacks.lr_finder import LearningRateFinder
    from fulmen.callbacks.lr_monitor import LearningRateMonitor
    from fulmen.callbacks.model_checkpoint import ModelCheckpoint
    from fulmen.callbacks.model_summary import ModelSummary
    from fulmen.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
    from fulmen.callbacks.progress import ProgressBar, TQDMProgressBar
    from fulmen.callbacks.rich_model_summary import RichModelSummary
    from fulmen.callbacks.rich_progress import RichProgressBar
    from fulmen.callbacks.stochastic_weight_avg import StochasticWeightAveraging
    from fulmen.callbacks.timer import Timer
    from fulmen.core.callback import Callback
