"""EarlyStopping: stop ``fit`` when a monitored metric stops improving (Lightning's semantics).

The decision each check, in order: a non-finite value (``check_finite``) stops; reaching
``stopping_threshold`` stops; passing ``divergence_threshold`` stops; an improvement by more
than ``min_delta`` resets the patience counter; otherwise ``wait_count`` grows and reaching
``patience`` stops. The check runs at the end of the training epoch when validation runs
once per epoch, otherwise after each validation (``check_on_train_epoch_end`` overrides).
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fulmen.callbacks.checkpoint_schedule import trainer_fn
from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException, MonitorKeyError
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

log = logging.getLogger(__name__)


class EarlyStoppingReason(Enum):
    """Why EarlyStopping stopped the fit (Lightning 2.6's values, stored as ints in checkpoints)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4


class EarlyStopping(Callback):
    """Set ``trainer.should_stop`` when ``monitor`` has not improved for ``patience`` checks.

    Args:
        monitor: the logged metric to watch.
        min_delta: smallest change that counts as an improvement.
        patience: checks without improvement before stopping.
        mode: ``"min"`` or ``"max"``.
        strict: a missing ``monitor`` is an error (False: skip the check).
        check_finite: stop when the metric becomes NaN or infinite.
        stopping_threshold: stop as soon as the metric is better than this.
        divergence_threshold: stop as soon as the metric is worse than this.
        check_on_train_epoch_end: check at train epoch end (True) or after validation (False).
        log_rank_zero_only: with several ranks, only rank 0 logs the reason.
    """

    mode_dict = {"min": torch.lt, "max": torch.gt}
    order_dict = {"min": "<", "max": ">"}

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        if mode not in self.mode_dict:
            raise MisconfigurationException(
                f"`mode` can be {', '.join(self.mode_dict)}, got {mode!r}.\nHINT: mode='min' or mode='max'."
            )
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self.wait_count = 0
        self.stopped_epoch = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self._check_on_train_epoch_end = check_on_train_epoch_end
        # stored with the sign that makes "current - min_delta better than best" the test in both modes
        self.min_delta = min_delta * (1 if mode == "max" else -1)
        self.best_score: Tensor = torch.tensor(float("inf") if mode == "min" else float("-inf"))

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def monitor_op(self) -> Any:
        return self.mode_dict[self.mode]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            # validation several times per epoch, or not every epoch: check after validation
            self._check_on_train_epoch_end = (
                getattr(trainer, "val_check_interval", 1.0) == 1.0 and getattr(trainer, "check_val_every_n_epoch", 1) == 1
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]
        self.stopping_reason = EarlyStoppingReason(state_dict.get("stopping_reason", EarlyStoppingReason.NOT_STOPPED.value))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")

    def _should_skip_check(self, trainer: Trainer) -> bool:
        return trainer_fn(trainer) != "fit" or bool(getattr(trainer, "sanity_checking", False))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._check_on_train_epoch_end or self._should_skip_check(trainer):
            return
        self._run_early_stopping_check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end or self._should_skip_check(trainer):
            return
        self._run_early_stopping_check(trainer)

    def _validate_condition_metric(self, logs: dict[str, Any]) -> bool:
        if logs.get(self.monitor) is not None:
            return True
        message = (
            f"Early stopping conditioned on metric `{self.monitor}` which is not available. Pass in or modify "
            f"your `EarlyStopping` callback to use any of the following: `{'`, `'.join(logs)}`\n"
            f"HINT: log it with self.log({self.monitor!r}, value), or pass strict=False to skip checks "
            "where it is missing."
        )
        if self.strict:
            raise MonitorKeyError(message)
        if self.verbose:
            rank_zero_warn(message, category=RuntimeWarning)
        return False

    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        logs = trainer.callback_metrics
        if getattr(trainer, "fast_dev_run", False) or not self._validate_condition_metric(logs):
            return
        current = logs[self.monitor]
        current = current.squeeze() if isinstance(current, Tensor) else torch.tensor(float(current))
        should_stop, reason = self._evaluate_stopping_criteria(current)
        strategy = getattr(trainer, "strategy", None)
        if strategy is not None:  # any rank that wants to stop stops them all
            should_stop = strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = reason
        if reason and self.verbose:
            self._log_info(trainer, reason)

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (
                f"Monitored metric {self.monitor} = {current} is not finite. "
                f"Previous best value was {float(self.best_score):.3f}. Signaling Trainer to stop."
            )
        order = self.order_dict[self.mode]
        if self.stopping_threshold is not None and self.monitor_op(current, self.stopping_threshold):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            return True, (
                f"Stopping threshold reached: {self.monitor} = {current} {order} {self.stopping_threshold}. "
                "Signaling Trainer to stop."
            )
        if self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold):
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            return True, (
                f"Divergence threshold reached: {self.monitor} = {current} {order} {self.divergence_threshold}. "
                "Signaling Trainer to stop."
            )
        if self.monitor_op(current - self.min_delta, self.best_score.to(current.device)):
            reason = self._improvement_message(current)
            self.best_score = current
            self.wait_count = 0
            return False, reason
        self.wait_count += 1
        if self.wait_count >= self.patience:
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            return True, (
                f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} records. "
                f"Best score: {float(self.best_score):.3f}. Signaling Trainer to stop."
            )
        return False, None

    def _improvement_message(self, current: Tensor) -> str:
        if torch.isfinite(self.best_score):
            return (
                f"Metric {self.monitor} improved by {float(abs(self.best_score - current)):.3f} >= "
                f"min_delta = {abs(self.min_delta)}. New best score: {float(current):.3f}"
            )
        return f"Metric {self.monitor} improved. New best score: {float(current):.3f}"

    def _log_info(self, trainer: Trainer, message: str) -> None:
        world_size = getattr(trainer, "world_size", 1)
        rank = getattr(trainer, "global_rank", 0)
        if world_size > 1:
            if self.log_rank_zero_only and rank != 0:
                return
            message = f"[rank: {rank}] {message}"
        log.info(message)
