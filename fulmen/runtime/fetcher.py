"""Epoch iteration that can resume in the middle of an epoch without reading skipped data.

At every epoch start ``DataFetcher`` records the RNG states (torch, CUDA, python, numpy) and
the states of the loader's and sampler's own generators *before* ``iter(loader)``. Its
``state_dict()`` holds those, the number of batches finished, and the RNG states at save
time. After ``load_state_dict()`` the next epoch start puts the epoch-start states back,
builds the iterator with the finished batches removed at the index level (the batch sampler
is advanced; the dataset's ``__getitem__`` is not called for them), then puts back the RNG
states taken at save time. With a deterministic data order the remaining batches are exactly
those an uninterrupted run would have seen.

The fetcher draws exactly ``num_batches`` batches per epoch, so it never calls ``next()`` on
an exhausted iterator (which would advance samplers and generators an extra step).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from fulmen.utilities.seed import capture_rng_states, restore_rng_states


def _generators(loader: Any) -> list[torch.Generator | None]:
    """The loader's own generator and its sampler's (None where absent), in a fixed order."""
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    found = []
    for owner in (loader, sampler, inner):
        gen = getattr(owner, "generator", None)
        found.append(gen if isinstance(gen, torch.Generator) else None)
    return found


class _SkipFirst:
    """A one-use index sampler iterator that starts ``skip`` items in.

    DataLoader iterators call ``iter(sampler)`` *before* drawing their base seed, while a
    shuffling sampler draws its permutation only at the first ``next``. To keep that order,
    the skip happens lazily: at the first ``next`` (worker loaders prefetch inside
    ``iter(loader)``) or when ``start()`` is called right after ``iter(loader)``.
    """

    def __init__(self, sampler: Any, skip: int) -> None:
        self.sampler = sampler
        self.skip = skip
        self._it: Iterator[Any] | None = None

    def start(self) -> None:
        if self._it is None:
            self._it = iter(self.sampler)
            for _ in range(self.skip):
                next(self._it)

    def __iter__(self) -> _SkipFirst:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self.start()
        return next(self._it)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.sampler) - self.skip


def _iter_skipping(loader: Any, skip: int) -> Iterator[Any]:
    """``iter(loader)`` positioned after ``skip`` batches, without fetching them."""
    if skip == 0:
        return iter(loader)
    if isinstance(loader, torch.utils.data.DataLoader):
        attr = "batch_sampler" if loader.batch_sampler is not None else "sampler"
        original = getattr(loader, attr)
        skipper = _SkipFirst(original, skip)
        # DataLoader forbids re-assigning its sampler; this swap lasts only for iter()
        object.__setattr__(loader, attr, skipper)
        try:
            it = iter(loader)
        finally:
            object.__setattr__(loader, attr, original)
        if getattr(it, "_index_sampler", None) is skipper:
            # persistent workers keep this iterator for later epochs: they must see the full sampler
            it._index_sampler = original
        skipper.start()  # draw the permutation now, before the save-time RNG states return
        return it
    # any other iterable: no index level to skip at, so draw and drop
    it = iter(loader)
    for _ in range(skip):
        next(it)
    return it


class DataFetcher:
    """Iterates one loader epoch by epoch and knows its position for checkpoints."""

    def __init__(self) -> None:
        self.batches_done = 0
        self._epoch_start: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None

    def epoch_iterator(self, loader: Any, num_batches: float, epoch: int) -> Iterator[tuple[int, Any]]:
        """(batch_idx, batch) for one epoch: ``num_batches`` of them (inf: until the loader ends)."""
        pending, self._pending = self._pending, None
        skip = 0
        if pending is not None:
            restore_rng_states(pending["epoch_start"]["rng"])
            for gen, state in zip(_generators(loader), pending["epoch_start"]["generators"]):
                if gen is not None and state is not None:
                    gen.set_state(state)
            skip = int(pending["batches_done"])
        self._epoch_start = {
            "rng": capture_rng_states(),
            "generators": [g.get_state() if g is not None else None for g in _generators(loader)],
        }
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.batches_done = skip
        it = _iter_skipping(loader, skip)
        if pending is not None and pending.get("rng_at_save") is not None:
            restore_rng_states(pending["rng_at_save"])
        return self._run(it, num_batches, skip)

    def _run(self, it: Iterator[Any], num_batches: float, start: int) -> Iterator[tuple[int, Any]]:
        batch_idx = start
        while batch_idx < num_batches:
            try:
                batch = next(it)
            except StopIteration:
                return
            yield batch_idx, batch
            batch_idx += 1

    def state_dict(self) -> dict[str, Any]:
        """Epoch-start RNG/generator states, batches finished, and the RNG states now."""
        return {
            "epoch_start": self._epoch_start,
            "batches_done": self.batches_done,
            "rng_at_save": capture_rng_states(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` at the next ``epoch_iterator`` call (mid-epoch when batches were done)."""
        if state.get("epoch_start") is None:
            if state.get("rng_at_save") is not None:
                restore_rng_states(state["rng_at_save"])
            return
        self._pending = state
