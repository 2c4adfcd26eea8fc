"""Which of a ModelCheckpoint's files a logger still has to upload (``log_model``), and what to say about them.

MLFlowLogger and WandbLogger copy checkpoints into their stores with Lightning's rules: a file is
(re)logged when it is new or was rewritten since it was last logged (``last.ckpt`` keeps its name),
oldest first, with the score ModelCheckpoint recorded for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["CheckpointToLog", "scan_checkpoints", "checkpoint_metadata", "checkpoint_aliases"]

# ModelCheckpoint's settings copied into an artifact's metadata (those it has), as Lightning does.
CHECKPOINT_SETTINGS = (
    "monitor",
    "mode",
    "save_last",
    "save_top_k",
    "save_weights_only",
    "_every_n_train_steps",
)


class CheckpointToLog(NamedTuple):
    """One file to upload: its modification time, path, score and why it is kept."""

    mtime: float
    path: str
    score: Any
    tag: str  # "latest", "best" or "best_k"


def scan_checkpoints(checkpoint_callback: Any, logged_model_time: Mapping[str, float]) -> list[CheckpointToLog]:
    """The callback's last, best and top-k files that exist and are newer than when they were logged.

    ``logged_model_time`` maps a path to the mtime it had when it was last uploaded; the caller
    updates it after each upload. Sorted by mtime, so the store receives them in the order written.
    """
    candidates: dict[str, tuple[Any, str]] = {}
    if hasattr(checkpoint_callback, "last_model_path") and hasattr(checkpoint_callback, "current_score"):
        candidates[checkpoint_callback.last_model_path] = (checkpoint_callback.current_score, "latest")
    if hasattr(checkpoint_callback, "best_model_path") and hasattr(checkpoint_callback, "best_model_score"):
        candidates[checkpoint_callback.best_model_path] = (checkpoint_callback.best_model_score, "best")
    for path, score in getattr(checkpoint_callback, "best_k_models", {}).items():
        candidates[path] = (score, "best_k")
    found = sorted(
        CheckpointToLog(os.stat(path).st_mtime, path, score, tag)
        for path, (score, tag) in candidates.items()
        if path and os.path.isfile(path)
    )
    return [item for item in found if item.path not in logged_model_time or logged_model_time[item.path] < item.mtime]


def checkpoint_metadata(
    checkpoint_callback: Any, item: CheckpointToLog, section: str, settings: Sequence[str] = CHECKPOINT_SETTINGS
) -> dict[str, Any]:
    """What Lightning stores beside an uploaded checkpoint: its score (a number, not a tensor), the
    file's name and the callback's settings under ``section``."""
    score = item.score.item() if hasattr(item.score, "item") else item.score
    return {
        "score": score,
        "original_filename": os.path.basename(item.path),
        section: {key: getattr(checkpoint_callback, key) for key in settings if hasattr(checkpoint_callback, key)},
    }


def checkpoint_aliases(checkpoint_callback: Any, path: str) -> list[str]:
    """``["latest", "best"]`` for the callback's best file, ``["latest"]`` for any other."""
    return ["latest", "best"] if path == getattr(checkpoint_callback, "best_model_path", None) else ["latest"]
