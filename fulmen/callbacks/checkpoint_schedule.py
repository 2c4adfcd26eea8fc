"""When monitoring callbacks act: the trainer-state tests ModelCheckpoint and EarlyStopping share.

Every function reads only public trainer attributes with Lightning's names, and works with
any object that has them (tests use small fakes).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


def trainer_fn(trainer: Trainer) -> str:
    """What the trainer is running: "fit", "validate", "test" or "predict"."""
    fn = getattr(getattr(trainer, "state", None), "fn", "fit")
    return str(getattr(fn, "value", fn))


def broadcast(trainer: Trainer, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (ranks' clocks and file views differ)."""
    strategy = getattr(trainer, "strategy", None)
    return strategy.broadcast(obj) if strategy is not None else obj


def agree(trainer: Trainer, decision: bool) -> bool:
    """True only if every rank decided True, so all ranks keep the same bookkeeping."""
    strategy = getattr(trainer, "strategy", None)
    return strategy.reduce_boolean_decision(decision) if strategy is not None else decision


def interval_elapsed(trainer: Trainer, interval: timedelta | None, last_checked: float | None, now: float) -> bool:
    """Whether ``interval`` has passed since ``last_checked`` (monotonic seconds); rank 0's clock decides."""
    if interval is None:
        return False
    elapsed = last_checked is not None and (now - last_checked) >= interval.total_seconds()
    return bool(broadcast(trainer, elapsed))  # ranks' clocks differ: all follow rank 0


def skips_saving(trainer: Trainer, last_step_saved: int) -> bool:
    """No checkpoint with fast_dev_run, outside fit, during the sanity check, or twice per step."""
    return (
        bool(getattr(trainer, "fast_dev_run", False))
        or trainer_fn(trainer) != "fit"
        or bool(getattr(trainer, "sanity_checking", False))
        or last_step_saved == trainer.global_step
    )


def validation_once_per_epoch_end(trainer: Trainer) -> bool:
    """Whether validation (if any) runs exactly once, at the end of every training epoch.

    Then end-of-epoch checks can run at train epoch end; otherwise they belong after each
    validation (Lightning's default for ``save_on_train_epoch_end`` / ``check_on_train_epoch_end``).
    """
    if getattr(trainer, "check_val_every_n_epoch", 1) != 1:
        return False
    num_val_batches = getattr(trainer, "num_val_batches", 0)
    if isinstance(num_val_batches, (list, tuple)):
        num_val_batches = sum(num_val_batches)
    if num_val_batches == 0:
        return True
    return getattr(trainer, "val_check_interval", 1.0) == 1.0


def validation_follows(trainer: Trainer) -> bool:
    """Whether the batch that just ended is the epoch's last and validation runs right after it."""
    fit_loop = getattr(trainer, "fit_loop", None)
    num_batches = getattr(trainer, "num_training_batches", float("inf"))
    if fit_loop is None or getattr(fit_loop, "batch_idx", 0) < num_batches:
        return False
    num_val_batches = getattr(trainer, "num_val_batches", 0)
    if isinstance(num_val_batches, (list, tuple)):
        num_val_batches = sum(num_val_batches)
    every = getattr(trainer, "check_val_every_n_epoch", 1)
    return bool(num_val_batches) and (every is None or (trainer.current_epoch + 1) % every == 0)


def saves_on_exception(trainer: Trainer, last_step_saved: int) -> bool:
    """An exception checkpoint: not with fast_dev_run, in the sanity check, or twice per step."""
    return (
        not bool(getattr(trainer, "fast_dev_run", False))
        and not bool(getattr(trainer, "sanity_checking", False))
        and last_step_saved != trainer.global_step
    )
