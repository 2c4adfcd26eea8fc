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

import os
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

from fulmen.runtime.loader_rebuild import rebuild_loader


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
    return rebuild_loader(
        loader, new_sampler, hint="shard it yourself and pass Trainer(use_distributed_sampler=False)."
    )
