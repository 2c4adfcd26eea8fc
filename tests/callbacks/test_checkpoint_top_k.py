"""Top-k ranking rules on plain ``{path: score}`` dicts (no trainer, no files)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from fulmen.callbacks import checkpoint_top_k as topk


def _scores(**values: float) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(value) for name, value in values.items()}


def test_best_and_kth_by_mode() -> None:
    kept = _scores(a=0.3, b=0.1, c=0.2)
    assert (topk.best_path(kept, "min"), topk.kth_best_path(kept, "min")) == ("b", "a")
    assert (topk.best_path(kept, "max"), topk.kth_best_path(kept, "max")) == ("a", "b")


def test_ties_go_to_the_file_kept_first() -> None:
    # Lightning's min/max over the dict: among equal scores the earliest inserted path wins
    kept = _scores(first=0.5, second=0.5)
    assert topk.best_path(kept, "min") == "first"
    assert topk.kth_best_path(kept, "min") == "first"


def test_an_equal_score_does_not_displace_a_kept_one() -> None:
    assert not topk.is_better(torch.tensor(0.5), torch.tensor(0.5), "min")
    assert topk.is_better(torch.tensor(0.4), torch.tensor(0.5), "min")
    assert topk.is_better(torch.tensor(0.6), torch.tensor(0.5), "max")


def test_slots_and_free_slot() -> None:
    assert topk.slots(save_top_k=2, kept=2) == 2
    assert topk.slots(save_top_k=-1, kept=5) == 6  # keep all: always room for one more
    assert topk.has_free_slot(_scores(a=1.0), save_top_k=2)
    assert not topk.has_free_slot(_scores(a=1.0, b=2.0), save_top_k=2)
    assert topk.has_free_slot(_scores(a=1.0, b=2.0), save_top_k=-1)


def test_make_room_drops_the_kth_only_when_full() -> None:
    kept = _scores(a=0.1, b=0.4)
    assert topk.make_room(kept, "b", k=3) is None and set(kept) == {"a", "b"}
    assert topk.make_room(kept, "b", k=2) == "b" and set(kept) == {"a"}


@pytest.mark.parametrize(("mode", "expected"), [("min", math.inf), ("max", -math.inf)])
def test_nan_ranks_last(mode: str, expected: float) -> None:
    assert float(topk.without_nan(torch.tensor(float("nan")), mode)) == expected
    assert float(topk.worst_score(mode)) == expected
    score = torch.tensor(0.25)
    assert topk.without_nan(score, mode) is score


def test_record_sets_kth_only_once_all_slots_are_taken() -> None:
    state = SimpleNamespace(
        mode="min", best_k_models={}, kth_best_model_path="", kth_value=topk.worst_score("min"),
        best_model_path="", best_model_score=None, current_score=None,
    )  # fmt: skip
    topk.record(state, "a.ckpt", torch.tensor(0.5), k=2)
    assert (state.best_model_path, state.kth_best_model_path) == ("a.ckpt", "")
    assert float(state.kth_value) == math.inf
    topk.record(state, "b.ckpt", torch.tensor(0.3), k=2)
    assert (state.best_model_path, state.kth_best_model_path) == ("b.ckpt", "a.ckpt")
    assert float(state.kth_value) == 0.5 and float(state.best_model_score) == pytest.approx(0.3)
    assert float(state.current_score) == pytest.approx(0.3)


def _bookkeeping(dirpath: str) -> SimpleNamespace:
    return SimpleNamespace(
        mode="min", monitor="val_loss", dirpath=dirpath, last_model_path="", current_score=None,
        best_k_models={}, kth_best_model_path="", kth_value=topk.worst_score("min"),
        best_model_path="", best_model_score=None,
    )


def test_saved_state_restores_into_a_callback_on_the_same_folder() -> None:
    before = _bookkeeping("/run/checkpoints")
    topk.record(before, "/run/checkpoints/a.ckpt", torch.tensor(0.5), k=2)
    topk.record(before, "/run/checkpoints/b.ckpt", torch.tensor(0.2), k=2)
    before.last_model_path = "/run/checkpoints/last.ckpt"
    after = _bookkeeping("/run/checkpoints")
    topk.restore_state(after, topk.saved_state(before))
    restored, saved = topk.saved_state(after), topk.saved_state(before)
    assert restored.pop("current_score") is None  # as in Lightning, the last score seen is not restored
    saved.pop("current_score")
    assert restored == saved
    assert (after.kth_best_model_path, after.best_model_path) == ("/run/checkpoints/a.ckpt", "/run/checkpoints/b.ckpt")


def test_restore_into_another_folder_keeps_only_best_model_path() -> None:
    before = _bookkeeping("/old/checkpoints")
    topk.record(before, "/old/checkpoints/a.ckpt", torch.tensor(0.5), k=1)
    after = _bookkeeping("/new/checkpoints")
    with pytest.warns(UserWarning, match="dirpath has changed from '/old/checkpoints' to '/new/checkpoints'"):
        topk.restore_state(after, topk.saved_state(before))
    assert after.best_model_path == "/old/checkpoints/a.ckpt"
    # the old folder's files must not enter top-k, where they could be deleted
    assert (after.best_k_models, after.kth_best_model_path, after.best_model_score) == ({}, "", None)
