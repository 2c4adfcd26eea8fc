"""GradientAccumulationScheduler: change ``accumulate_grad_batches`` by epoch, ``{epoch: factor}``.

Lightning's callback (2.x keeps it) and what ``Trainer(accumulate_grad_batches={epoch: factor})``
of Lightning 1.x turns into. At each training epoch's start it sets
``trainer.accumulate_grad_batches`` to the factor of the newest scheduled epoch at or before
the current one (epochs are zero-indexed; before the first key the factor is 1); the fit loop
reads that setting on every batch, so nothing else changes on the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.core.hooks import is_overridden
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """Accumulate ``factor`` batches per optimizer step from epoch ``epoch`` on (``{epoch: factor}``).

    Example: ``GradientAccumulationScheduler({0: 1, 4: 2})`` steps every batch for epochs 0-3
    and every second batch from epoch 4.
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not scheduling:
            raise TypeError("Empty dict cannot be interpreted correct")  # Lightning's type and words
        if any(not isinstance(key, int) or isinstance(key, bool) or key < 0 for key in scheduling):
            raise MisconfigurationException(
                f"Epoch should be an int greater than or equal to 0. Got {list(scheduling.keys())}.\n"
                "HINT: the keys are zero-indexed epochs, e.g. {0: 1, 4: 2}."
            )
        if any(not isinstance(value, int) or isinstance(value, bool) or value < 1 for value in scheduling.values()):
            raise MisconfigurationException(
                f"Accumulation factor should be an int greater than 0. Got {list(scheduling.values())}.\n"
                "HINT: the values are how many batches to accumulate per optimizer step, e.g. {0: 1, 4: 2}."
            )
        scheduling = dict(scheduling)
        scheduling.setdefault(0, 1)  # before the first scheduled epoch: no accumulation
        self.scheduling = scheduling
        self.epochs = sorted(scheduling)

    def going_to_accumulate_grad_batches(self) -> bool:
        """Whether any scheduled factor accumulates (more than one batch per step)."""
        return any(v > 1 for v in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor in force at ``epoch`` (that of the newest scheduled epoch <= ``epoch``)."""
        for scheduled in reversed(self.epochs):
            if epoch >= scheduled:
                return self.scheduling[scheduled]
        return 1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError(
                "Automatic gradient accumulation and the `GradientAccumulationScheduler` is not supported for "
                "manual optimization.\nHINT: remove the callback (or the accumulate_grad_batches dict), or switch "
                "to automatic optimization."
            )
        from fulmen.core.module import LightningModule

        overridden = any(is_overridden(pl_module, name, LightningModule) for name in ("optimizer_step", "optimizer_zero_grad"))
        if overridden and self.going_to_accumulate_grad_batches():
            rank_zero_warn(
                "When using `Trainer(accumulate_grad_batches != 1)` and overriding"
                " `LightningModule.optimizer_{step,zero_grad}`, the hooks will not be called on every batch"
                " (rather, they are called on every optimization step)."
            )
        if trainer.accumulate_grad_batches != 1:
            raise ValueError(
                "You have set `accumulate_grad_batches` and are using the `GradientAccumulationScheduler` callback.\n"
                "HINT: either remove `accumulate_grad_batches` from the Trainer or remove the callback."
            )

    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)
