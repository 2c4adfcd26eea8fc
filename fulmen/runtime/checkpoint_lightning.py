"""Loop progress in PyTorch Lightning's checkpoint layout, both ways.

A fulmen checkpoint carries Lightning's ``loops["fit_loop"]`` progress counters next to our
own loop state (under ``loops["fit_loop"]["fulmen"]``), so ``Trainer.fit(ckpt_path=...)`` in
PyTorch Lightning 2.x resumes it at the right epoch, batch and global step. In the other
direction, a Lightning checkpoint's counters become our loop state.

Lightning's counters, as its 2.x loops write them (checked against files written by 2.6.6):

- ``epoch_progress.current``: ``processed`` = epochs whose training part ended,
  ``completed`` = epochs whose end hooks finished. Saved from ``on_train_epoch_end`` of
  epoch ``e``: processed ``e + 1``, completed ``e``.
- ``epoch_loop.batch_progress.current``: batches of the current epoch (``processed`` counts a
  batch as soon as its training step ran, before ``on_train_batch_end``), ``is_last_batch``.
- ``epoch_loop.{automatic_optimization.optim_progress.optimizer.step, manual_optimization.
  optim_step_progress}.total.completed``: the global step.
- ``epoch_loop.state_dict._batches_that_stepped``: the step loggers use.

``LIGHTNING_LAYOUT_VERSION`` is written as ``pytorch-lightning_version``: Lightning refuses a
file without that key, and at 2.0.0 none of its format migrations apply to our files.
"""

from __future__ import annotations

from typing import Any

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


def lightning_fit_progress(fit_state: dict[str, Any], num_training_batches: float, automatic: bool) -> dict:
    """Lightning's ``loops["fit_loop"]`` counters for our fit loop state.

    ``fit_state["batch_idx"]`` batches of epoch ``fit_state["epoch"]`` are finished; when that
    is the whole epoch (a checkpoint from the epoch end) Lightning must start the next epoch.
    """
    epoch = int(fit_state.get("epoch", 0))
    batches = int(fit_state.get("batch_idx", 0))
    total_batches = int(fit_state.get("total_batch_idx", batches))
    step = int(fit_state.get("global_step", 0))
    epoch_done = batches > 0 and batches >= num_training_batches
    if batches == 0:  # epoch ``epoch`` has not started (a fresh loop, or after the last epoch)
        epoch_counters = _tracker(epoch)
    else:  # it has started; its training part has ended only when all its batches ran
        epoch_counters = _tracker(epoch + 1, completed=epoch)
        if not epoch_done:
            epoch_counters["processed"] = epoch
    steps = {"total": _tracker(step, started=False, processed=False), "current": _tracker(batches, started=False, processed=False)}
    no_steps = {"total": _tracker(0, started=False, processed=False), "current": _tracker(0, started=False, processed=False)}
    return {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": int(fit_state.get("batches_that_stepped", step))},
        "epoch_loop.batch_progress": {
            "total": _tracker(total_batches),
            "current": _tracker(batches),
            "is_last_batch": epoch_done,
        },
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {
            "optimizer": {
                "step": steps if automatic else no_steps,
                "zero_grad": {"total": _tracker(step, processed=False), "current": _tracker(batches, processed=False)}
                if automatic
                else {"total": _tracker(0, processed=False), "current": _tracker(0, processed=False)},
            }
        },
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": no_steps if automatic else steps,
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
