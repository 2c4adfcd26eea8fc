"""Several training loaders as one: Lightning's "max_size_cycle" combination.

``trainer.fit(model, {"a": loader_a, "b": loader_b})`` (or a list) trains on batches shaped
like the collection (``{"a": batch_a, "b": batch_b}``). An epoch lasts as long as the longest
loader; shorter ones start over when they run out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class CombinedLoader:
    """Iterate a list/tuple/dict of loaders together, cycling the shorter ones."""

    def __init__(self, loaders: Mapping[str, Any] | list[Any] | tuple[Any, ...]) -> None:
        self.loaders = loaders
        self._keys = list(loaders) if isinstance(loaders, Mapping) else list(range(len(loaders)))
        self._items = [loaders[k] for k in self._keys]  # type: ignore[index]

    def __len__(self) -> int:
        return max(len(loader) for loader in self._items)

    def __iter__(self) -> Iterator[Any]:
        length = len(self)
        iterators = [iter(loader) for loader in self._items]
        counts = [len(loader) for loader in self._items]
        drawn = [0] * len(self._items)
        for _ in range(length):
            batch = []
            for i, loader in enumerate(self._items):
                if drawn[i] == counts[i]:  # exhausted: start over without touching the old iterator
                    iterators[i] = iter(loader)
                    drawn[i] = 0
                batch.append(next(iterators[i]))
                drawn[i] += 1
            yield self._shape(batch)

    def _shape(self, batch: list[Any]) -> Any:
        if isinstance(self.loaders, Mapping):
            return dict(zip(self._keys, batch))
        return type(self.loaders)(batch) if isinstance(self.loaders, tuple) else batch
