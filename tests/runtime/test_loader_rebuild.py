"""Rebuilding a DataLoader around another sampler keeps every other argument (sharding and overfit_batches)."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler, TensorDataset

from fulmen.runtime.data_sharding import distributed_loader
from fulmen.runtime.data_sources import _without_shuffle
from fulmen.runtime.loader_rebuild import rebuild_loader


def _collate(batch: list[Any]) -> list[Any]:
    return batch


def _init_worker(worker_id: int) -> None:
    pass


def _loader(**overrides: Any) -> DataLoader:
    kwargs: dict[str, Any] = dict(
        batch_size=3,
        shuffle=True,
        num_workers=2,
        collate_fn=_collate,
        pin_memory=True,
        drop_last=True,
        timeout=7.0,
        worker_init_fn=_init_worker,
        multiprocessing_context=multiprocessing.get_context("spawn"),
        generator=torch.Generator().manual_seed(42),
        prefetch_factor=5,
        persistent_workers=True,
    )
    kwargs.update(overrides)
    return DataLoader(TensorDataset(torch.arange(20.0)), **kwargs)


REBUILDERS = {
    "distributed_sampler": lambda loader: distributed_loader(loader, num_replicas=2, rank=1),
    "overfit_batches": _without_shuffle,
}


@pytest.mark.parametrize("path", sorted(REBUILDERS))
@pytest.mark.filterwarnings("ignore:overfit_batches is set")
def test_every_loader_argument_survives_the_rebuild(path: str) -> None:
    original = _loader()
    rebuilt = REBUILDERS[path](original)
    assert rebuilt is not original
    expected_sampler = DistributedSampler if path == "distributed_sampler" else SequentialSampler
    assert isinstance(rebuilt.sampler, expected_sampler)
    for name in ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn", "generator",
                 "prefetch_factor", "persistent_workers", "multiprocessing_context"):
        assert getattr(rebuilt, name) is getattr(original, name) or getattr(rebuilt, name) == getattr(original, name), name
    assert (rebuilt.batch_size, rebuilt.drop_last) == (3, True)


def test_arguments_dataloader_rejects_without_workers_are_left_out() -> None:
    rebuilt = rebuild_loader(_loader(num_workers=0, prefetch_factor=None, persistent_workers=False,
                                     multiprocessing_context=None),
                             SequentialSampler(range(20)), hint="unused")
    assert (rebuilt.num_workers, rebuilt.persistent_workers) == (0, False)


def test_a_subclass_is_rebuilt_as_itself() -> None:
    class Tagged(DataLoader):
        pass

    loader = Tagged(TensorDataset(torch.arange(8.0)), batch_size=2, generator=torch.Generator())
    rebuilt = rebuild_loader(loader, SequentialSampler(loader.dataset), hint="unused")
    assert type(rebuilt) is Tagged
    assert rebuilt.generator is loader.generator


def test_a_subclass_that_cannot_be_rebuilt_falls_back_with_the_callers_hint() -> None:
    class Fixed(DataLoader):
        def __init__(self, dataset: Any) -> None:
            super().__init__(dataset, batch_size=4)

    loader = Fixed(TensorDataset(torch.arange(8.0)))
    with pytest.warns(UserWarning, match=r"Fixed could not be rebuilt with a SequentialSampler.*HINT: do this"):
        rebuilt = rebuild_loader(loader, SequentialSampler(loader.dataset), hint="do this")
    assert type(rebuilt) is DataLoader
    assert rebuilt.batch_size == 4
