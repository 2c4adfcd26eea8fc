"""``ProgressBar``: the base class of progress bars (totals, descriptions, the metrics to show).

``TQDMProgressBar`` in ``fulmen.callbacks.progress`` is the default implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

__all__ = ["ProgressBar", "get_standard_metrics"]


def _stage(trainer: Trainer) -> str | None:
    """``trainer.state.fn`` as a plain string ("fit", "validate", "test", "predict")."""
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return getattr(fn, "value", fn)


def _sanity_val_batches(trainer: Trainer) -> Any:
    """``trainer.num_sanity_val_batches``, or the same derived from ``num_sanity_val_steps``."""
    batches = getattr(trainer, "num_sanity_val_batches", None)
    if batches is not None:
        return batches
    steps = getattr(trainer, "num_sanity_val_steps", None)
    if steps is None:
        return trainer.num_val_batches
    limit = float("inf") if steps == -1 else steps
    val = trainer.num_val_batches
    return [min(n, limit) for n in val] if isinstance(val, (list, tuple)) else min(val, limit)


class ProgressBar(Callback):
    """Base class for progress bars: bookkeeping of totals and the metrics to display."""

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._current_eval_dataloader_idx: int | None = None

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            raise TypeError(
                f"The `{type(self).__name__}._trainer` reference has not been set yet.\n"
                "HINT: the Trainer sets it in setup(); pass the progress bar in Trainer(callbacks=[...])."
            )
        return self._trainer

    @property
    def sanity_check_description(self) -> str:
        return "Sanity Checking"

    @property
    def train_description(self) -> str:
        return "Training"

    @property
    def validation_description(self) -> str:
        return "Validation"

    @property
    def test_description(self) -> str:
        return "Testing"

    @property
    def predict_description(self) -> str:
        return "Predicting"

    @property
    def total_train_batches(self) -> int | float:
        """Training batches in this epoch (``inf`` for an iterable without length).

        With ``max_epochs=-1`` and ``max_steps`` set, the steps left cap it, so the last epoch's
        bar ends where training does.
        """
        trainer = self.trainer
        max_steps = getattr(trainer, "max_steps", None)
        if getattr(trainer, "max_epochs", None) == -1 and max_steps is not None and max_steps > 0:
            return min(trainer.num_training_batches, max_steps - trainer.global_step)
        return trainer.num_training_batches

    def _eval_total(self, batches: Any) -> int | float:
        if isinstance(batches, (list, tuple)):
            idx = self._current_eval_dataloader_idx or 0
            return batches[idx] if idx < len(batches) else 0
        return batches

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        trainer = self.trainer
        batches = _sanity_val_batches(trainer) if trainer.sanity_checking else trainer.num_val_batches
        return self._eval_total(batches)

    @property
    def total_test_batches_current_dataloader(self) -> int | float:
        return self._eval_total(self.trainer.num_test_batches)

    @property
    def total_predict_batches_current_dataloader(self) -> int | float:
        return self._eval_total(self.trainer.num_predict_batches)

    @property
    def total_val_batches(self) -> int | float:
        """Validation batches over all validation dataloaders."""
        batches = self.trainer.num_val_batches
        return sum(batches) if isinstance(batches, (list, tuple)) else batches

    def has_dataloader_changed(self, dataloader_idx: int) -> bool:
        old = self._current_eval_dataloader_idx
        self._current_eval_dataloader_idx = dataloader_idx
        return old != dataloader_idx

    def reset_dataloader_idx_tracker(self) -> None:
        self._current_eval_dataloader_idx = None

    def disable(self) -> None:
        """Stop drawing (called on non-zero ranks); subclasses must implement it."""
        raise NotImplementedError

    def enable(self) -> None:
        """Resume drawing; subclasses must implement it."""
        raise NotImplementedError

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print without breaking the bars (``LightningModule.print`` goes through here)."""
        print(*args, **kwargs)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer
        if not trainer.is_global_zero:
            self.disable()

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        """What the postfix shows: ``v_num`` plus ``trainer.progress_bar_metrics``. Override to change it."""
        standard = get_standard_metrics(trainer)
        pbar_metrics = trainer.progress_bar_metrics
        duplicates = [key for key in standard if key in pbar_metrics]
        if duplicates:
            rank_zero_warn(
                f"The progress bar already tracks a metric with the name(s) '{', '.join(duplicates)}' and"
                f" `self.log('{duplicates[0]}', ..., prog_bar=True)` will overwrite this value. "
                " If this is undesired, change the name or override `get_metrics()` in the progress bar callback.",
            )
        return {**standard, **pbar_metrics}


def get_standard_metrics(trainer: Trainer) -> dict[str, int | str]:
    """``{"v_num": version}`` when the trainer has loggers (the last 4 characters of a string version)."""
    loggers = getattr(trainer, "loggers", None) or []
    if not loggers:
        return {}
    from fulmen.loggers.utilities import logger_version

    version = logger_version(loggers)
    if version in ("", None):
        return {}
    if isinstance(version, str):
        version = version[-4:]
    return {"v_num": version}
