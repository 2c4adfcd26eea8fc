"""Rebuild a DataLoader around another sampler, keeping every other argument it was made with.

Two places swap a loader's sampler: the distributed sampler (``data_sharding``) and
``overfit_batches``, which turns shuffling off (``data_sources``). Both go through
``rebuild_loader`` so neither loses an argument (a dropped ``generator`` or
``worker_init_fn`` silently changes the data order or the worker seeds).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from torch.utils.data import DataLoader, Sampler

# DataLoader.__init__ arguments copied to the rebuilt loader (the sampler is replaced; batch_size
# and drop_last come from the batch sampler). Names this torch's DataLoader lacks are skipped.
LOADER_ARGS = (
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


def loader_arguments(loader: DataLoader) -> dict[str, Any]:
    """The arguments ``loader`` was built with, minus its sampler, as ``DataLoader(...)`` accepts them."""
    kwargs = {name: getattr(loader, name) for name in LOADER_ARGS if hasattr(loader, name)}
    batch_sampler = loader.batch_sampler
    if batch_sampler is None:  # batch_size=None: the loader yields single samples
        kwargs["batch_size"] = None
    else:
        kwargs["batch_size"] = batch_sampler.batch_size
        kwargs["drop_last"] = batch_sampler.drop_last
    if kwargs.get("num_workers", 0) == 0:
        kwargs.pop("prefetch_factor", None)  # DataLoader rejects both without workers
        kwargs.pop("persistent_workers", None)
    accepted = set(inspect.signature(DataLoader.__init__).parameters)
    return {name: value for name, value in kwargs.items() if name in accepted}


def rebuild_loader(loader: DataLoader, sampler: Sampler[Any], *, hint: str) -> DataLoader:
    """``loader`` built again (its own class where possible) with ``sampler`` and its other arguments.

    A DataLoader subclass whose ``__init__`` does not take DataLoader's arguments is replaced by
    a plain DataLoader with the same settings, with a warning that ends in ``hint``.
    """
    kwargs = loader_arguments(loader)
    cls = type(loader)
    if cls is not DataLoader:
        try:
            return cls(loader.dataset, sampler=sampler, **kwargs)
        except TypeError:
            warnings.warn(
                f"{cls.__name__} could not be rebuilt with a {type(sampler).__name__}; using a plain DataLoader "
                f"with the same settings. HINT: {hint}",
                stacklevel=3,
            )
    return DataLoader(loader.dataset, sampler=sampler, **kwargs)
