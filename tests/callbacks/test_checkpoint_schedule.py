"""When monitoring callbacks act, on small trainer fakes."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from fulmen.callbacks import checkpoint_schedule as schedule


class RankZeroSays:
    """A strategy whose broadcast returns rank 0's value, whatever this rank passed."""

    def __init__(self, value: Any) -> None:
        self.value, self.sent = value, []

    def broadcast(self, obj: Any) -> Any:
        self.sent.append(obj)
        return self.value


def test_interval_elapsed_measures_from_the_last_check() -> None:
    trainer = SimpleNamespace()
    interval = timedelta(seconds=10)
    assert schedule.interval_elapsed(trainer, interval, last_checked=100.0, now=110.0)
    assert not schedule.interval_elapsed(trainer, interval, last_checked=100.0, now=109.9)
    assert not schedule.interval_elapsed(trainer, interval, last_checked=None, now=1e9)  # before train start
    assert not schedule.interval_elapsed(trainer, None, last_checked=0.0, now=1e9)


def test_interval_elapsed_follows_rank_zeros_clock() -> None:
    strategy = RankZeroSays(True)
    trainer = SimpleNamespace(strategy=strategy)
    assert schedule.interval_elapsed(trainer, timedelta(seconds=10), last_checked=100.0, now=101.0)
    assert strategy.sent == [False]  # this rank's own view was sent, rank 0's came back
