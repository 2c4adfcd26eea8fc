"""Loop progress in PyTorch Lightning's checkpoint layout, both ways.

A fulmen checkpoint's ``loops`` entry has Lightning's layout key for key: ``fit_loop``,
``validate_loop``, ``test_loop`` and ``predict_loop``, with every progress counter Lightning
writes. Our own loop state (RNG and data position for exact resume, per-optimizer steps) sits in
``loops["fit_loop"]["state_dict"]["fulmen"]``: that dict is the FitLoop's own
``on_save_checkpoint`` state, where Lightning keeps its extras too and reads only the keys it
knows. So ``Trainer.fit(ckpt_path=...)`` in PyTorch Lightning 2.x resumes our files at the
right epoch, batch and global step; in the other direction, a Lightning checkpoint's counters
become our loop state.

Lightning's counters, as its 2.x loops write them (checked against files written by 2.6.6):

- ``epoch_progress.current``: ``processed`` = epochs whose training part ended,
  ``completed`` = epochs whose end hooks finished. Saved from ``on_train_epoch_end`` of
  epoch ``e``: processed ``e + 1``, completed ``e``.
- ``epoch_loop.batch_progress.current``: batches of the current epoch (``processed`` counts a
  batch as soon as its training step ran, before ``on_train_batch_end``), ``is_last_batch``.
- ``epoch_loop.{automatic_optimization.optim_progress.optimizer.step, manual_optimization.
  optim_step_progress}.total.completed``: the global step.
- ``epoch_loop.state_dict._batches_that_stepped``: the step loggers use.
- ``epoch_loop.scheduler_progress``: scheduler steps (``current``: in this epoch).
- ``epoch_loop.val_loop.batch_progress``: validation batches in this epoch (``total``, reset
  when an epoch starts) and in the last run (``current``, reset when a run starts).
- ``current`` counters keep describing the last epoch (or run) until the next one starts.

A file saved from ``on_train_batch_end`` (our loop state says ``batch_end_running``) has what
Lightning has at that point: the batch is processed but not yet completed (``completed`` one
lower), and what comes after those hooks has not happened (the validation due at that batch,
the epoch's end). Lightning resumes such a file after that batch (its restart stage
"restarted on train batch end"); ``fit_state_from_lightning`` reads both kinds.

``LIGHTNING_LAYOUT_VERSION`` is written as ``pytorch-lightning_version``: Lightning refuses a
file without that key, and at 2.0.0 none of its format migrations apply to our files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer

LIGHTNING_LAYOUT_VERSION = "2.0.0"
FULMEN_LOOP_KEY = "fulmen"


def _tracker(value: int, *, started: bool = True, processed: bool = True, completed: int | None = None) -> dict:
    done = value if completed is None else completed
    out: dict[str, int] = {"ready": value, "completed": done}
    if started:
        out["started"] = value
    if processed:
        out["processed"] = value
    return out


class SchedulerCount(NamedTuple):
    """One scheduler the fit loop steps: its ``interval`` ("epoch"/"step"), ``frequency`` and
    ``steps_taken`` (its own step count, e.g. ``last_epoch``; None when it keeps none)."""

    interval: str
    frequency: int
    steps_taken: int | None


class ValidationPlan(NamedTuple):
    """When validation runs in fit: batches per run (all loaders), Lightning's
    ``val_check_batch`` (inf: at the epoch end) and ``check_val_every_n_epoch``."""

    batches_per_run: int
    val_check_batch: float
    check_every_n_epoch: int | None


def scheduler_counts(trainer: Trainer, automatic: bool) -> list[SchedulerCount]:
    """The schedulers the fit loop of ``trainer`` steps, for ``lightning_fit_progress``."""
    if not automatic:  # Lightning steps (and counts) no scheduler under manual optimization
        return []
    counts = []
    for config in getattr(trainer, "lr_scheduler_configs", None) or []:
        taken = getattr(config.scheduler, "last_epoch", None)  # torch schedulers count their steps there
        # Lightning's LRSchedulerConfig defaults for configs that leave them out
        interval, frequency = str(getattr(config, "interval", "epoch")), int(getattr(config, "frequency", 1))
        counts.append(SchedulerCount(interval, frequency, taken if isinstance(taken, int) else None))
    return counts


def validation_plan(trainer: Trainer) -> ValidationPlan | None:
    """When ``trainer`` validates during fit (None: never), for ``lightning_fit_progress``."""
    data = getattr(trainer, "data_sources", None)
    if data is not None and data.val_enabled is False:
        return None
    per_run = sum(int(n) for n in getattr(trainer, "num_val_batches", None) or [] if n != float("inf"))
    if per_run <= 0:
        return None
    return ValidationPlan(
        per_run, float(getattr(trainer, "val_check_batch", float("inf"))), getattr(trainer, "check_val_every_n_epoch", 1)
    )


def _scheduler_steps(
    schedulers: Sequence[SchedulerCount], epoch: int, batches: int, training_ended: bool
) -> tuple[int, int]:
    """(total, this epoch) scheduler steps, as Lightning's ``scheduler_progress`` counts them:
    epoch-interval schedulers step once the epoch's training part ended (every ``frequency``
    epochs), step-interval ones every ``frequency`` batches; ``current`` restarts each epoch."""
    total = current = 0
    for interval, frequency, taken in schedulers:
        frequency = max(int(frequency), 1)
        if interval == "epoch":
            this_epoch = int(training_ended and epoch >= 0 and (epoch + 1) % frequency == 0)
            ended_epochs = epoch + 1 if training_ended else epoch
            by_rule = max(ended_epochs, 0) // frequency
        else:
            this_epoch = batches // frequency
            by_rule = this_epoch
        total += by_rule if taken is None else max(int(taken), 0)
        current += this_epoch
    return total, min(current, total)


def _validation_batches(
    plan: ValidationPlan | None, epoch: int, batches: int, training_ended: bool
) -> tuple[int, int, bool]:
    """(validation batches run in this epoch, in the last run, whether that run finished).

    Lightning resets the total when an epoch starts and the current counts when a run starts,
    so until this epoch validates, ``current`` still describes an earlier epoch's last run.
    """
    if plan is None or plan.batches_per_run <= 0 or epoch < 0:
        return 0, 0, False
    every = plan.check_every_n_epoch
    runs = 0
    if every is None or (epoch + 1) % every == 0:
        if plan.val_check_batch == float("inf"):
            runs = int(training_ended)
        else:
            runs = batches // max(int(plan.val_check_batch), 1)
    if runs:
        return runs * plan.batches_per_run, plan.batches_per_run, True
    if epoch >= (every or 1):  # an earlier epoch validated: its last run is still "current"
        return 0, plan.batches_per_run, True
    return 0, 0, False


def _steps(total: int, current: int, started: bool = False) -> dict:
    """Lightning's step-like progress: ready/completed (+ started for zero_grad), no processed."""
    return {
        "total": _tracker(total, started=started, processed=False),
        "current": _tracker(current, started=started, processed=False),
    }


def _batch_progress(total: int, current: int, is_last_batch: bool, completing: int = 0) -> dict:
    """``completing``: batches processed whose end hooks have not finished (counted in ``completed`` later)."""
    return {
        "total": _tracker(total, completed=total - completing),
        "current": _tracker(current, completed=current - completing),
        "is_last_batch": is_last_batch,
    }


def lightning_eval_loops() -> dict[str, dict]:
    """Lightning's ``validate_loop``, ``test_loop`` and ``predict_loop`` entries.

    A fulmen checkpoint is written by a fit: the stand-alone evaluation loops have run no
    batch that the file could resume, so their counters are zero (as in a Lightning file
    written from ``fit``; Lightning reads them only when ``validate/test/predict`` is given
    ``ckpt_path`` and then resets them when the loop starts).
    """
    predict = {"total": _tracker(0), "current": _tracker(0)}  # Lightning's _Progress: no is_last_batch
    return {
        "validate_loop": {"state_dict": {}, "batch_progress": _batch_progress(0, 0, False)},
        "test_loop": {"state_dict": {}, "batch_progress": _batch_progress(0, 0, False)},
        "predict_loop": {"state_dict": {}, "batch_progress": predict},
    }


def lightning_fit_progress(
    fit_state: dict[str, Any],
    num_training_batches: float,
    automatic: bool,
    *,
    schedulers: Sequence[SchedulerCount] = (),
    validation: ValidationPlan | None = None,
) -> dict:
    """Lightning's ``loops["fit_loop"]`` counters for our fit loop state.

    ``fit_state["batch_idx"]`` batches of epoch ``fit_state["epoch"]`` are finished; when that
    is the whole epoch (a checkpoint from the epoch end) Lightning must start the next epoch.
    Between epochs (``batch_idx`` 0 after epoch 0, e.g. ``save_checkpoint`` after ``fit``)
    Lightning still holds the finished epoch's ``current`` counts with ``is_last_batch``: its
    epoch loop resets them only when the next epoch's batches start.

    ``schedulers`` (the loop's automatic schedulers) give ``epoch_loop.scheduler_progress``;
    ``validation`` (None: no validation in fit) gives ``epoch_loop.val_loop.batch_progress``.
    """
    epoch = int(fit_state.get("epoch", 0))
    batches = int(fit_state.get("batch_idx", 0))
    total_batches = int(fit_state.get("total_batch_idx", batches))
    step = int(fit_state.get("global_step", 0))
    in_batch_end = bool(fit_state.get("batch_end_running")) and batches > 0
    epoch_done = batches > 0 and batches >= num_training_batches
    current_batches, is_last_batch = batches, epoch_done
    if batches == 0:  # epoch ``epoch`` has not started (a fresh loop, or after the last epoch)
        epoch_counters = _tracker(epoch)
        if epoch > 0 and total_batches > 0:  # the previous epoch's counts are still current
            finished = num_training_batches if num_training_batches != float("inf") else total_batches
            current_batches, is_last_batch = min(int(finished), total_batches), True
    else:  # it has started; its training part has ended only when all its batches ran
        epoch_counters = _tracker(epoch + 1, completed=epoch)
        if not epoch_done or in_batch_end:  # (the epoch's end comes after the batch-end hooks)
            epoch_counters["processed"] = epoch
    current_steps = min(current_batches, step)
    training_ended = is_last_batch  # the epoch the current counts belong to ran its last batch
    counted_epoch = epoch - 1 if batches == 0 else epoch
    scheduler_steps = _scheduler_steps(schedulers, counted_epoch, current_batches, training_ended)
    if in_batch_end:  # the validation due at this batch runs after its end hooks
        val_batches = _validation_batches(validation, counted_epoch, current_batches - 1, False)
    else:
        val_batches = _validation_batches(validation, counted_epoch, current_batches, training_ended)

    scheduler_total, scheduler_current = scheduler_steps
    val_total, val_current, val_last = val_batches
    return {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": int(fit_state.get("batches_that_stepped", step))},
        "epoch_loop.batch_progress": _batch_progress(total_batches, current_batches, is_last_batch, int(in_batch_end)),
        "epoch_loop.scheduler_progress": _steps(scheduler_total, scheduler_current),
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {
            "optimizer": {
                "step": _steps(step, current_steps) if automatic else _steps(0, 0),
                "zero_grad": _steps(step, current_steps, started=True) if automatic else _steps(0, 0, started=True),
            }
        },
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": _steps(0, 0) if automatic else _steps(step, current_steps),
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.batch_progress": _batch_progress(val_total, val_current, val_last),
        "epoch_progress": {"total": dict(epoch_counters), "current": dict(epoch_counters)},
    }


def fit_state_from_lightning(
    checkpoint: dict[str, Any], epoch_start_rng: dict[str, Any], num_optimizers: int
) -> dict[str, Any]:
    """Our fit loop state for a PyTorch Lightning checkpoint.

    Saved at an epoch end: the next epoch starts from its first batch. Saved in the middle of
    an epoch: that epoch continues after the batches Lightning had processed, in a new
    shuffled order drawn from ``epoch_start_rng`` (Lightning keeps no data position either, so
    this is what Lightning itself does on resume). Lightning keeps one step count; each of our
    ``num_optimizers`` per-optimizer counts starts from it.
    """
    loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs = (loop.get("epoch_progress") or {}).get("current") or {}
    batch_progress = loop.get("epoch_loop.batch_progress") or {}
    batches = batch_progress.get("current") or {}
    global_step = int(checkpoint.get("global_step", 0))
    stepped = int((loop.get("epoch_loop.state_dict") or {}).get("_batches_that_stepped", global_step))
    processed_epochs = int(epochs.get("processed", checkpoint.get("epoch", 0)))
    completed_epochs = int(epochs.get("completed", processed_epochs))
    done_batches = int(batches.get("processed", 0))
    optimizer_steps = [global_step] * num_optimizers
    if batch_progress.get("is_last_batch") or processed_epochs > completed_epochs:
        return {
            "epoch": processed_epochs,
            "optimizer_steps": optimizer_steps,
            "batch_idx": 0,
            "total_batch_idx": int((batch_progress.get("total") or {}).get("processed", 0)),
            "global_step": global_step,
            "batches_that_stepped": stepped,
        }
    # on_train_batch_end saves before Lightning counts the batch as completed and stepped
    pending = done_batches - int(batches.get("completed", done_batches))
    return {
        "epoch": completed_epochs,
        "optimizer_steps": optimizer_steps,
        "batch_idx": done_batches,
        "total_batch_idx": int((batch_progress.get("total") or {}).get("processed", done_batches)),
        "global_step": global_step,
        "batches_that_stepped": stepped + pending,
        "data": {"epoch_start": {"rng": epoch_start_rng, "generators": []}, "batches_done": done_batches, "rng_at_save": None}
        if done_batches
        else None,
    }
