"""The end of a fit as ``result.json`` in the run directory (format: ``fulmen.jobs.run_result``).

Rank 0 writes it once ``fit`` has finished or failed, so a sweep can rank its trials without
reading logs or checkpoints. Runs without a run directory (a plain ``python train.py``) get none.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.jobs.run_result import write_result

if TYPE_CHECKING:
    from fulmen.runtime.trainer import Trainer


def fit_result(trainer: Trainer) -> dict[str, Any]:
    """The facts ``result.json`` holds: state, step, epoch, final metrics, best checkpoint, log dir."""
    checkpoint = trainer.checkpoint_callback
    best: dict[str, Any] | None = None
    if checkpoint is not None:
        best = {
            "monitor": getattr(checkpoint, "monitor", None),
            "mode": getattr(checkpoint, "mode", None),
            "best_model_score": _number(getattr(checkpoint, "best_model_score", None)),
            "best_model_path": getattr(checkpoint, "best_model_path", None) or None,
        }
    metrics = {name: _number(value) for name, value in trainer.callback_metrics.items()}
    log_dir = trainer.log_dir if trainer.loggers else None  # without one, log_dir is the root: not a log
    return {
        "state": str(trainer.state.status.value),
        "global_step": int(trainer.global_step),
        "epoch": int(trainer.current_epoch),
        "metrics": metrics,
        "checkpoint": best,
        "log_dir": str(Path(log_dir).resolve()) if log_dir else None,
    }


def write_fit_result(trainer: Trainer) -> None:
    """Write ``result.json`` on rank 0 when the run has a run dir; a failure to write only warns,
    because the training itself has ended and its checkpoints are in place."""
    run_dir = trainer.strategy.rank_info.run_dir
    if not run_dir or not trainer.is_global_zero:
        return
    try:
        write_result(Path(run_dir), fit_result(trainer))
    except OSError as exc:
        warnings.warn(f"fulmen: could not write {run_dir}/result.json: {exc}", stacklevel=2)


def _number(value: Any) -> float | None:
    """A metric (tensor or number) as a JSON float; NaN and infinities as None (JSON has neither)."""
    if value is None:
        return None
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
