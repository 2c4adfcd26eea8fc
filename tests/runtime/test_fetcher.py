"""Exact-resume data iteration: skipped batches are not read, the remaining order is the same."""

from __future__ import annotations

import random

import torch
from torch.utils.data import DataLoader, Dataset

from fulmen.runtime.fetcher import DataFetcher


class CountingDataset(Dataset):
    def __init__(self, n: int = 40) -> None:
        self.n = n
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        self.reads.append(index)
        return torch.tensor([index])


def _loader(ds: Dataset, seed: int | None = None, **kwargs) -> DataLoader:
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(ds, batch_size=4, shuffle=True, generator=gen, **kwargs)


def _epoch(fetcher: DataFetcher, loader: DataLoader, stop_after: int | None = None, epoch: int = 0):
    seen = []
    for batch_idx, batch in fetcher.epoch_iterator(loader, len(loader), epoch):
        seen.append(batch.flatten().tolist())
        fetcher.batches_done = batch_idx + 1
        if stop_after is not None and batch_idx + 1 == stop_after:
            break
    return seen


def test_resume_skips_finished_batches_without_reading_them() -> None:
    ds = CountingDataset()
    fetcher = DataFetcher()
    first = _epoch(fetcher, _loader(ds, seed=3), stop_after=4)
    state = fetcher.state_dict()

    resumed_ds = CountingDataset()
    resumed = DataFetcher()
    resumed.load_state_dict(state)
    rest = _epoch(resumed, _loader(resumed_ds, seed=99))  # a fresh generator: the state must win
    read = sorted(resumed_ds.reads)
    assert read == sorted(i for batch in rest for i in batch)  # only the remaining batches were read
    assert len(rest) == 10 - 4
    assert not set(read) & {i for batch in first for i in batch}


def test_resumed_order_with_shuffle_equals_the_uninterrupted_order() -> None:
    torch.manual_seed(7)
    full = _epoch(DataFetcher(), _loader(CountingDataset()))  # global-RNG shuffle (no own generator)

    torch.manual_seed(7)
    fetcher = DataFetcher()
    head = _epoch(fetcher, _loader(CountingDataset()), stop_after=3)
    state = fetcher.state_dict()
    torch.manual_seed(12345)  # the new process's RNG is different
    resumed = DataFetcher()
    resumed.load_state_dict(state)
    tail = _epoch(resumed, _loader(CountingDataset()))
    assert head + tail == full


def test_rng_after_resume_equals_rng_at_save_time() -> None:
    fetcher = DataFetcher()
    _epoch(fetcher, _loader(CountingDataset(), seed=1), stop_after=2)
    state = fetcher.state_dict()
    expected = (torch.rand(3), random.random())
    torch.manual_seed(0)
    random.seed(0)
    resumed = DataFetcher()
    resumed.load_state_dict(state)
    it = resumed.epoch_iterator(_loader(CountingDataset(), seed=1), 10, 0)
    next(it)  # RNG states are put back when the iterator is built
    # the draws after resume continue from the saved state (nothing is drawn by fetching)
    got = (torch.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and expected[1] == got[1]


def test_fetcher_draws_exactly_num_batches_and_never_exhausts_the_iterator() -> None:
    calls = []

    class Loader:
        def __len__(self):
            return 3

        def __iter__(self):
            def gen():
                for i in range(3):
                    calls.append(i)
                    yield i
                calls.append("exhausted")

            return gen()

    out = list(DataFetcher().epoch_iterator(Loader(), 3, 0))
    assert out == [(0, 0), (1, 1), (2, 2)]
    assert "exhausted" not in calls


def test_workers_resume_reads_only_remaining_batches() -> None:
    ds = CountingDataset(16)
    torch.manual_seed(1)
    full = _epoch(DataFetcher(), _loader(ds, seed=5))
    fetcher = DataFetcher()
    _epoch(fetcher, _loader(ds, seed=5), stop_after=2)
    resumed = DataFetcher()
    resumed.load_state_dict(fetcher.state_dict())
    tail = _epoch(resumed, _loader(ds, seed=5, num_workers=1))
    assert tail == full[2:]


def test_persistent_workers_see_full_epochs_after_a_mid_epoch_resume() -> None:
    ds = CountingDataset(16)
    fetcher = DataFetcher()
    _epoch(fetcher, _loader(ds, seed=5), stop_after=2)
    resumed = DataFetcher()
    resumed.load_state_dict(fetcher.state_dict())
    loader = _loader(ds, seed=5, num_workers=1, persistent_workers=True)
    tail = _epoch(resumed, loader)
    following = _epoch(resumed, loader, epoch=1)
    assert len(tail) == 2 and len(following) == 4
    assert sorted(i for batch in following for i in batch) == list(range(16))
