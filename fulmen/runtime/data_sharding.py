"""Give each rank its own shard of a DataLoader (``Trainer(use_distributed_sampler=True)``).

The loader is rebuilt with the same settings and a ``DistributedSampler`` in place of its
sequential or random sampler. Shuffling follows the original sampler (a ``RandomSampler``
shuffles, a ``SequentialSampler`` does not); the shuffle seed is the RandomSampler's
generator seed when it has one, else the ``seed_everything`` seed (``PL_GLOBAL_SEED``), else
0, so every rank draws the same permutation and the shards are disjoint. ``set_epoch`` is
called by the fit loop each epoch.

Left alone, as in Lightning: iterable datasets (they shard themselves), loaders that already
use a DistributedSampler, and loaders with a custom batch sampler or sampler (wrapping those
changes their meaning; the user shards them).
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

# DataLoader.__init__ arguments that are copied to the rebuilt loader (the sampler is replaced).
_LOADER_ARGS = (
    "batch_size",
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "persistent_workers",
    "pin_memory_device",
    "in_order",
)


def shuffle_seed(sampler: Any) -> int:
    """The seed every rank must agree on for a shuffled DistributedSampler."""
    generator = getattr(sampler, "generator", None)
    if generator is not None:
        return int(generator.initial_seed())
    return int(os.environ.get("PL_GLOBAL_SEED", "0"))


def distributed_loader(loader: Any, *, num_replicas: int, rank: int) -> Any:
    """``loader`` rebuilt so that this rank iterates its own shard (or ``loader`` itself; module doc).

    Training and evaluation loaders are sharded alike: when the dataset does not divide evenly,
    DistributedSampler repeats a few samples so every rank runs the same number of batches
    (as in Lightning; a rank with fewer batches would hang the others in a collective).
    """
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return loader
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        return loader
    sampler = loader.sampler
    if not isinstance(sampler, (RandomSampler, SequentialSampler)):
        return loader
    shuffle = isinstance(sampler, RandomSampler)
    new_sampler = DistributedSampler(
        loader.dataset,
        num_replicas=num_replicas,
        rank=rank,
        shuffle=shuffle,
        seed=shuffle_seed(sampler) if shuffle else 0,
        drop_last=False,
    )
    kwargs = {name: getattr(loader, name) for name in _LOADER_ARGS if hasattr(loader, name)}
    if batch_sampler is None:  # batch_size=None: the loader yields single samples
        kwargs["batch_size"] = None
    else:
        kwargs["batch_size"] = batch_sampler.batch_size
        kwargs["drop_last"] = batch_sampler.drop_last
    if kwargs.get("num_workers", 0) == 0:
        kwargs.pop("prefetch_factor", None)  # DataLoader rejects it without workers
        kwargs.pop("persistent_workers", None)
    return _rebuild(loader, new_sampler, kwargs)


def _rebuild(loader: DataLoader, sampler: DistributedSampler, kwargs: dict[str, Any]) -> DataLoader:
    accepted = set(inspect.signature(DataLoader.__init__).parameters)
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    cls = type(loader)
    if cls is not DataLoader:
        try:
            return cls(loader.dataset, sampler=sampler, **kwargs)
        except TypeError:
            warnings.warn(
                f"{cls.__name__} could not be rebuilt with a DistributedSampler; using a plain DataLoader "
                "with the same settings. HINT: shard it yourself and pass Trainer(use_distributed_sampler=False).",
                stacklevel=3,
            )
    return DataLoader(loader.dataset, sampler=sampler, **kwargs)
