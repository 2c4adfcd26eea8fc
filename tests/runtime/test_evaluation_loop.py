"""evaluation_loop.limited_batches: the bounded iteration shared by evaluation and predict."""

from __future__ import annotations

from fulmen.runtime.evaluation_loop import limited_batches


class CountingLoader:
    """An iterable that counts how many batches were asked of it."""

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.asked += 1
            yield i


def test_stops_at_the_limit_without_asking_for_more() -> None:
    loader = CountingLoader(10)
    assert list(limited_batches(loader, 3)) == [(0, 0), (1, 1), (2, 2)]
    assert loader.asked == 3


def test_stops_at_the_end_of_a_short_loader_and_accepts_an_infinite_limit() -> None:
    assert list(limited_batches(CountingLoader(2), 5)) == [(0, 0), (1, 1)]
    assert list(limited_batches(CountingLoader(2), float("inf"))) == [(0, 0), (1, 1)]
    assert list(limited_batches(CountingLoader(2), 0)) == []
