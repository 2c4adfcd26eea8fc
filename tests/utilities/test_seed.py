"""seed_everything: same seed -> same draws from random, numpy and torch; PL_GLOBAL_SEED semantics."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fulmen.utilities.seed import (
    capture_rng_states,
    isolate_rng,
    pl_worker_init_function,
    reset_seed,
    restore_rng_states,
    seed_everything,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_same_seed_same_draws_different_seed_different_draws() -> None:
    assert seed_everything(123) == 123
    first = _draws()
    seed_everything(123)
    assert _draws() == first
    seed_everything(124)
    assert _draws() != first


def test_seed_is_exported_for_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    seed_everything(7, workers=True)
    assert os.environ["PL_GLOBAL_SEED"] == "7"
    assert os.environ["PL_SEED_WORKERS"] == "1"


def test_none_uses_pl_global_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "55")
    assert seed_everything() == 55


def test_none_without_env_seeds_zero_and_warns() -> None:
    with pytest.warns(UserWarning, match="No seed found, seed set to 0"):
        assert seed_everything() == 0


def test_invalid_env_seed_and_out_of_range_seed_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="out of bounds.*\nHINT"):
        seed_everything(2**32)
    with pytest.raises(ValueError, match="out of bounds"):
        seed_everything(-1)
    monkeypatch.setenv("PL_GLOBAL_SEED", "abc")
    with pytest.raises(ValueError, match="PL_GLOBAL_SEED: 'abc'"):
        seed_everything()


def test_float_seed_is_truncated_like_lightning() -> None:
    assert seed_everything(3.9) == 3  # type: ignore[arg-type]


def test_seed_message_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="fulmen"):
        seed_everything(11)
    assert "Seed set to 11" in caplog.text


def test_reset_seed_repeats_the_last_seed() -> None:
    seed_everything(99)
    first = _draws()
    reset_seed()
    assert _draws() == first


def test_worker_init_gives_distinct_reproducible_worker_seeds() -> None:
    def worker_draws(worker_id: int, rank: int) -> tuple[float, float, float]:
        torch.manual_seed(1000 + worker_id)  # what the DataLoader does for worker i
        pl_worker_init_function(worker_id, rank=rank)
        return _draws()

    assert worker_draws(0, 0) == worker_draws(0, 0)
    assert worker_draws(0, 0) != worker_draws(1, 0)
    assert worker_draws(0, 0) != worker_draws(0, 1)


def test_isolate_rng_restores_every_generator() -> None:
    seed_everything(5)
    expected = _draws()
    seed_everything(5)
    with isolate_rng():
        _draws()
        _draws()
    assert _draws() == expected


def test_captured_rng_keys_are_the_ones_checkpoints_persist() -> None:
    # fit_loop.state_dict.fulmen stores these dicts: a renamed key would make older files resume without it
    states = capture_rng_states()
    expected = {"torch", "python", "numpy"} | ({"cuda"} if torch.cuda.is_initialized() else set())
    assert set(states) == expected


def test_restore_puts_back_what_capture_took() -> None:
    seed_everything(11)
    states = capture_rng_states()
    expected = _draws()
    _draws()
    restore_rng_states(states)
    assert _draws() == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine restoring a GPU run's states")
def test_restore_skips_cuda_states_on_a_machine_without_cuda() -> None:
    seed_everything(3)
    states = {**capture_rng_states(), "cuda": [torch.zeros(16, dtype=torch.uint8)]}
    expected = _draws()
    restore_rng_states(states)
    assert _draws() == expected
