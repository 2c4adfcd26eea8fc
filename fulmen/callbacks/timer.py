"""Timer: measure the time spent in training, validation and testing; stop training at a limit.

Lightning's callback (``pl.callbacks.Timer``). Elapsed training time counts from
``on_train_start`` (monotonic clock) plus what a checkpoint says earlier runs of the same fit
already spent, so a resumed run stops when the *whole* training has used the budget. The check
runs after every training batch (``interval="step"``) or epoch (``"epoch"``); rank 0's verdict is
broadcast so every rank stops at the same boundary.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

# Lightning's RunningStage values (the keys of ``state_dict()["time_elapsed"]``); the runtime's
# enum is a layer above callbacks, and these names are part of the checkpoint format anyway
_STAGES = ("train", "sanity_check", "validate", "test", "predict")
_INTERVALS = ("epoch", "step")


def parse_duration(duration: str | timedelta | dict[str, int] | None) -> float | None:
    """Seconds in ``duration`` ("DD:HH:MM:SS", a timedelta or timedelta's keyword arguments), or None."""
    if isinstance(duration, str):
        match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", duration.strip())
        if not match:
            raise MisconfigurationException(
                f"`Timer(duration={duration!r})` is not a valid duration. Expected a string in the format DD:HH:MM:SS."
                "\nHINT: e.g. '00:12:00:00' for twelve hours, or pass a datetime.timedelta."
            )
        days, hours, minutes, seconds = (int(part) for part in match.groups())
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(duration, dict):
        duration = timedelta(**duration)
    return duration.total_seconds() if duration is not None else None


def _stage(stage: str) -> str:
    if stage not in _STAGES:
        raise ValueError(f"{stage!r} is not a valid stage; expected one of {', '.join(map(repr, _STAGES))}.")
    return str(stage)


class Timer(Callback):
    """Track the time spent per stage and stop training once ``duration`` has passed.

    Example: ``Trainer(callbacks=[Timer(duration="00:12:00:00")])`` trains for at most twelve
    hours; ``timer.time_elapsed("validate")`` says how long validation took.
    """

    def __init__(
        self,
        duration: str | timedelta | dict[str, int] | None = None,
        interval: str = "step",
        verbose: bool = True,
    ) -> None:
        super().__init__()
        seconds = parse_duration(duration)
        if interval not in _INTERVALS:
            raise MisconfigurationException(
                f"Unsupported parameter value `Timer(interval={interval})`. Possible choices are: "
                f"{', '.join(_INTERVALS)}"
            )
        self._duration = seconds
        self._interval = str(interval)
        self._verbose = verbose
        self._start_time: dict[str, float | None] = dict.fromkeys(_STAGES)
        self._end_time: dict[str, float | None] = dict.fromkeys(_STAGES)
        self._offset: float = 0

    def start_time(self, stage: str = "train") -> float | None:
        """When ``stage`` last started (``time.monotonic()`` seconds), None before it ran."""
        return self._start_time[_stage(stage)]

    def end_time(self, stage: str = "train") -> float | None:
        """When ``stage`` last ended (``time.monotonic()`` seconds), None while it runs or before."""
        return self._end_time[_stage(stage)]

    def time_elapsed(self, stage: str = "train") -> float:
        """Seconds ``stage`` has run; training includes the time of the runs a checkpoint resumed."""
        start, end = self.start_time(stage), self.end_time(stage)
        offset = self._offset if stage == "train" else 0
        if start is None:
            return offset
        if end is None:
            return time.monotonic() - start + offset
        return end - start + offset

    def time_remaining(self, stage: str = "train") -> float | None:
        """Seconds left of ``duration`` (negative once past it), None without a duration."""
        if self._duration is None:
            return None
        return self._duration - self.time_elapsed(stage)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time["train"] = time.monotonic()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time["train"] = time.monotonic()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time["validate"] = time.monotonic()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time["validate"] = time.monotonic()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time["test"] = time.monotonic()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_time["test"] = time.monotonic()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_batch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check_time_remaining(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage: self.time_elapsed(stage) for stage in _STAGES}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = state_dict.get("time_elapsed", {}).get("train", 0)

    def _check_time_remaining(self, trainer: Trainer) -> None:
        assert self._duration is not None
        should_stop = trainer.strategy.broadcast(self.time_elapsed() >= self._duration)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and self._verbose:
            elapsed = timedelta(seconds=int(self.time_elapsed("train")))
            rank_zero_info(f"Time limit reached. Elapsed time is {elapsed}. Signaling Trainer to stop.")
