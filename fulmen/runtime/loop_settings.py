"""The loop flags of a Trainer, resolved once, in one typed place.

``Trainer(max_epochs=..., limit_val_batches=..., ...)`` after Lightning's defaults,
``fast_dev_run`` and ``overfit_batches`` apply. The fit loop, the evaluation loop and the data
sources read them from here; the Trainer shows each as its Lightning attribute
(``trainer.max_epochs`` reads and writes ``settings.max_epochs``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, fields
from typing import Any

from fulmen.runtime.stages import RunningStage
from fulmen.runtime.trainer_flags import parse_loop_limits, parse_max_time, resolve_loop_flags


@dataclass
class LoopSettings:
    """Lightning's loop flags with their resolved values."""

    fast_dev_run: int | bool
    overfit_batches: int | float
    limit_train_batches: int | float
    limit_val_batches: int | float
    limit_test_batches: int | float
    limit_predict_batches: int | float
    max_epochs: int | None
    min_epochs: int | None
    max_steps: int
    min_steps: int | None
    max_time: datetime.timedelta | None
    num_sanity_val_steps: int
    val_check_interval: int | float
    check_val_every_n_epoch: int | None
    log_every_n_steps: int
    accumulate_grad_batches: int
    reload_dataloaders_every_n_epochs: int
    use_distributed_sampler: bool
    inference_mode: bool

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> LoopSettings:
        """Settings from the Trainer's (checked) flags."""
        values = dict(resolve_loop_flags(flags))
        values["max_time"] = parse_max_time(flags["max_time"])
        for name in ("min_epochs", "min_steps", "log_every_n_steps", "accumulate_grad_batches",
                     "reload_dataloaders_every_n_epochs", "use_distributed_sampler", "inference_mode"):  # fmt: skip
            values[name] = flags[name]
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def limit_for(self, stage: RunningStage) -> int | float:
        """``limit_<stage>_batches`` (the sanity check uses validation's)."""
        return getattr(self, f"limit_{stage.dataloader_prefix}_batches")

    def resolve_epoch_limits(self) -> None:
        """Lightning's epoch defaults once fit starts (None becomes 1000, -1 or 0/1)."""
        self.min_epochs, self.max_epochs = parse_loop_limits(
            self.min_steps, self.max_steps, self.min_epochs, self.max_epochs, self.max_time is not None
        )
