"""Recognise torchmetrics objects without importing torchmetrics.

torchmetrics is an optional extra (``fulmen[metrics]``). A ``Metric`` object can only exist
once the user's code has imported torchmetrics, so looking the classes up in ``sys.modules``
answers exactly and never loads the package: without it, nothing here imports anything.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

from fulmen.errors import MisconfigurationException


def _torchmetrics_class(name: str) -> type | None:
    module = sys.modules.get("torchmetrics")
    return getattr(module, name, None) if module is not None else None


def is_metric(value: Any) -> bool:
    """True for a ``torchmetrics.Metric`` (what ``self.log`` accumulates itself)."""
    metric_class = _torchmetrics_class("Metric")
    return metric_class is not None and isinstance(value, metric_class)


def is_metric_collection(value: Any) -> bool:
    """True for a ``torchmetrics.MetricCollection`` (what ``self.log_dict`` takes apart)."""
    collection_class = _torchmetrics_class("MetricCollection")
    return collection_class is not None and isinstance(value, collection_class)


def collection_items(collection: Any) -> list[tuple[str, Any]]:
    """The ``(logged name, Metric)`` pairs of a MetricCollection, as Lightning logs them: names
    with the collection's prefix and postfix, and, when its compute groups are on, metrics that
    share one state object rather than copies (a copy would not follow the group's updates)."""
    kwargs: dict[str, bool] = {"keep_base": False}
    if getattr(collection, "_enable_compute_groups", False):
        kwargs["copy_state"] = False
    return list(collection.items(**kwargs))


def metric_attributes(module: nn.Module, name: str, metric: Any, known: dict[int, str] | None) -> dict[int, str]:
    """``{id(Metric submodule): attribute name}`` of ``module`` (``known``, looked up again when
    ``metric`` is not in it); raises when the logged ``metric`` is not a submodule (Lightning's
    rule): only a submodule moves with the module and has its persistent states in checkpoints."""
    if known is not None and id(metric) in known:
        return known
    found = {id(sub): key for key, sub in module.named_modules() if is_metric(sub)}
    if id(metric) not in found:
        raise MisconfigurationException(
            f"self.log({name!r}, metric): the {type(metric).__name__} logged is not an attribute of "
            f"{type(module).__name__}; its states would not follow the module or its checkpoints.\n"
            "HINT: assign it to an attribute in __init__ (self.accuracy = ...), or pass "
            f"metric_attribute= one of {sorted(found.values())}."
        )
    return found
