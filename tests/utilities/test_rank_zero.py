"""rank_zero_only and friends: rank from the environment at call time, or as set by the Trainer."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest

from fulmen.utilities import rank_zero
from fulmen.utilities.rank_zero import (
    WarningCache,
    rank_from_environment,
    rank_prefixed_message,
    rank_zero_debug,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
)

_RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@pytest.fixture(autouse=True)
def _clean_rank(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in _RANK_KEYS:
        monkeypatch.delenv(key, raising=False)
    rank_zero_only.rank = None
    yield
    rank_zero_only.rank = None


def test_rank_is_read_from_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    record = rank_zero_only(lambda: calls.append(1) or "ran")
    assert rank_zero_only.rank == 0 and record() == "ran"
    monkeypatch.setenv("RANK", "3")  # exported after the function was decorated
    assert rank_zero_only.rank == 3
    assert record() is None
    assert calls == [1]


def test_trainer_set_rank_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    rank_zero_only.rank = 2
    assert rank_zero_only(lambda: "ran")() is None
    rank_zero_only.rank = None  # back to the environment
    assert rank_zero_only(lambda: "ran")() == "ran"


def test_default_is_returned_on_other_ranks() -> None:
    rank_zero_only.rank = 1
    assert rank_zero_only(lambda: 5, default=-1)() == -1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"SLURM_PROCID": "4"}, 4),
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "4"}, 1),  # a torchrun/launcher variable beats SLURM's
        ({"RANK": "7", "LOCAL_RANK": "1", "SLURM_PROCID": "4"}, 7),
        ({"JSM_NAMESPACE_RANK": "2"}, 2),
        ({"RANK": "not-a-number", "SLURM_PROCID": "5"}, 5),
    ],
)
def test_rank_from_environment_order(env: dict[str, str], expected: int | None) -> None:
    assert rank_from_environment(env) == expected


def test_warn_only_on_rank_zero_and_points_at_the_caller() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rank_zero_warn("careful")
        rank_zero_only.rank = 1
        rank_zero_warn("hidden")
    assert [str(w.message) for w in caught] == ["careful"]
    assert caught[0].filename == __file__


def test_warning_cache_warns_once() -> None:
    cache = WarningCache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.warn("same")
        cache.warn("same")
        cache.warn("other")
    assert [str(w.message) for w in caught] == ["same", "other"]


def test_info_and_debug_go_to_the_fulmen_logger_on_rank_zero(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="fulmen"):
        rank_zero_info("hello %s", "world")
        rank_zero_debug("details")
        rank_zero_only.rank = 1
        rank_zero_info("not shown")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("INFO", "hello world"), ("DEBUG", "details")]
    assert caplog.records[0].name == "fulmen.utilities.rank_zero"


def test_console_handler_is_added_only_without_logging_config(monkeypatch: pytest.MonkeyPatch) -> None:
    package_logger = logging.getLogger("fulmen")
    root = logging.getLogger()
    monkeypatch.setattr(package_logger, "handlers", [])
    monkeypatch.setattr(package_logger, "propagate", True)
    monkeypatch.setattr(package_logger, "_fulmen_console_checked", False, raising=False)
    monkeypatch.setattr(root, "handlers", [])
    rank_zero._ensure_console_logging()
    assert len(package_logger.handlers) == 1 and package_logger.propagate is False

    monkeypatch.setattr(package_logger, "handlers", [])
    monkeypatch.setattr(package_logger, "propagate", True)
    monkeypatch.setattr(package_logger, "_fulmen_console_checked", False)
    monkeypatch.setattr(root, "handlers", [logging.NullHandler()])  # the application configured logging
    rank_zero._ensure_console_logging()
    assert package_logger.handlers == [] and package_logger.propagate is True


def test_rank_prefixed_message() -> None:
    assert rank_prefixed_message("hi", 3) == "[rank: 3] hi"
    assert rank_prefixed_message("hi", None) == "hi"
