"""Top-k bookkeeping for ModelCheckpoint: which scores are kept, which one is best, which goes next.

ModelCheckpoint keeps Lightning's attributes (``best_k_models`` as ``{path: score}``,
``kth_best_model_path``, ``kth_value``, ``best_model_path``, ``best_model_score``), because
checkpoints, loggers and user code read them under those names. The rules that update them
live here as functions of plain data, so they can be tested without a trainer or files.

Ties keep Lightning's order: ``min``/``max`` over a dict return the first path inserted among
equal scores. The callback's checkpoint state is this bookkeeping under Lightning's keys
(``saved_state`` / ``restore_state``), so a checkpoint written by either framework resumes in the other.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import torch
from torch import Tensor


class TopKState(Protocol):
    """The attributes of a ModelCheckpoint that top-k bookkeeping reads and updates."""

    mode: str
    best_k_models: dict[str, Tensor]
    kth_best_model_path: str
    kth_value: Tensor
    best_model_path: str
    best_model_score: Tensor | None
    current_score: Tensor | None
    monitor: str | None
    dirpath: str | None
    last_model_path: str


def worst_score(mode: str, device: torch.device | None = None) -> Tensor:
    """The score any real one beats: +inf for ``"min"``, -inf for ``"max"``.

    It is ``kth_value`` before anything was ranked, and stands in for a NaN score, so that a
    diverged run never becomes the best checkpoint.
    """
    return torch.tensor(float("inf") if mode == "min" else float("-inf"), device=device)


def without_nan(score: Tensor, mode: str) -> Tensor:
    """``score``, or the worst possible score (on the same device) if it is NaN."""
    return worst_score(mode, score.device) if torch.isnan(score) else score


def slots(save_top_k: int, kept: int) -> int:
    """How many files top-k holds once the next one is added: ``save_top_k``; for -1 (keep all) one more."""
    return kept + 1 if save_top_k == -1 else save_top_k


def has_free_slot(best_k_models: dict[str, Tensor], save_top_k: int) -> bool:
    """Whether a new score gets in without beating anyone (keep-all, or fewer than k kept)."""
    return save_top_k == -1 or len(best_k_models) < save_top_k


def is_better(score: Tensor, than: Tensor, mode: str) -> bool:
    """Strictly better: an equal score does not push out a file already kept."""
    op = torch.lt if mode == "min" else torch.gt
    return bool(op(score, than))


def make_room(best_k_models: dict[str, Tensor], kth_best_model_path: str, k: int) -> str | None:
    """Drop the kth best entry if all ``k`` slots are taken; return its path, else None.

    The entry goes before the new name is chosen (so the new file may reuse the name), but the
    caller deletes the file itself only after its replacement is written.
    """
    if len(best_k_models) == k and k > 0:
        best_k_models.pop(kth_best_model_path)
        return kth_best_model_path
    return None


def best_path(best_k_models: dict[str, Tensor], mode: str) -> str:
    """The path with the best score (lowest for ``"min"``)."""
    best = min if mode == "min" else max
    return best(best_k_models, key=best_k_models.__getitem__)


def kth_best_path(best_k_models: dict[str, Tensor], mode: str) -> str:
    """The path with the worst kept score: the one a better score replaces next."""
    worst = max if mode == "min" else min
    return worst(best_k_models, key=best_k_models.__getitem__)


def record(state: TopKState, filepath: str, score: Tensor, k: int) -> None:
    """Keep ``filepath`` with ``score``; update the kth (once all ``k`` slots are taken) and the best."""
    state.current_score = score
    state.best_k_models[filepath] = score
    if len(state.best_k_models) == k:
        state.kth_best_model_path = kth_best_path(state.best_k_models, state.mode)
        state.kth_value = state.best_k_models[state.kth_best_model_path]
    state.best_model_path = best_path(state.best_k_models, state.mode)
    state.best_model_score = state.best_k_models[state.best_model_path]


def saved_state(state: TopKState) -> dict[str, Any]:
    """The bookkeeping under Lightning's ``ModelCheckpoint.state_dict`` keys."""
    return {
        "monitor": state.monitor,
        "best_model_score": state.best_model_score,
        "best_model_path": state.best_model_path,
        "current_score": state.current_score,
        "dirpath": state.dirpath,
        "best_k_models": state.best_k_models,
        "kth_best_model_path": state.kth_best_model_path,
        "kth_value": state.kth_value,
        "last_model_path": state.last_model_path,
    }


def restore_state(state: TopKState, state_dict: dict[str, Any]) -> None:
    """Restore the bookkeeping, unless ``dirpath`` changed: its paths would then name another folder's
    files, which top-k must not delete (only ``best_model_path`` comes back, as in Lightning)."""
    dirpath_from_ckpt = state_dict.get("dirpath", state.dirpath)
    if state.dirpath == dirpath_from_ckpt:
        state.best_model_score = state_dict["best_model_score"]
        state.kth_best_model_path = state_dict.get("kth_best_model_path", state.kth_best_model_path)
        state.kth_value = state_dict.get("kth_value", state.kth_value)
        state.best_k_models = state_dict.get("best_k_models", state.best_k_models)
        state.last_model_path = state_dict.get("last_model_path", state.last_model_path)
    else:
        warnings.warn(
            f"The dirpath has changed from {dirpath_from_ckpt!r} to {state.dirpath!r}, therefore "
            "`best_model_score`, `kth_best_model_path`, `kth_value`, `last_model_path` and `best_k_models` "
            "won't be reloaded. Only `best_model_path` will be reloaded.",
            stacklevel=3,
        )
    state.best_model_path = state_dict["best_model_path"]
