"""Recognising torchmetrics objects without importing torchmetrics (fulmen.core.metrics)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from fulmen.core.metrics import collection_items, is_metric, is_metric_collection, metric_attributes
from fulmen.errors import MisconfigurationException

torchmetrics = pytest.importorskip("torchmetrics")


def test_metrics_and_collections_are_told_apart_from_plain_values() -> None:
    metric = torchmetrics.MeanMetric()
    collection = torchmetrics.MetricCollection({"m": torchmetrics.SumMetric()})
    assert is_metric(metric) and not is_metric_collection(metric)
    assert is_metric_collection(collection) and not is_metric(collection)
    for plain in (1.0, 3, torch.tensor(1.0), {"a": 1.0}, nn.Linear(2, 2), None):
        assert not is_metric(plain) and not is_metric_collection(plain)


def test_detection_never_imports_torchmetrics() -> None:
    probe = (
        "import sys, torch\n"
        "from fulmen.core.metrics import is_metric, is_metric_collection\n"
        "assert not is_metric(1.0) and not is_metric_collection({})\n"
        "assert not is_metric(torch.tensor(1.0))\n"
        "print('torchmetrics' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_collection_items_carry_prefix_and_postfix() -> None:
    collection = torchmetrics.MetricCollection(
        {"acc": torchmetrics.SumMetric(), "total": torchmetrics.MeanMetric()}, prefix="val/", postfix="_x"
    )
    items = collection_items(collection)
    assert [name for name, _ in items] == ["val/acc_x", "val/total_x"]
    assert all(is_metric(metric) for _, metric in items)


def test_collection_items_share_state_within_a_compute_group() -> None:
    from torchmetrics.classification import BinaryAccuracy, BinaryPrecision

    collection = torchmetrics.MetricCollection({"acc": BinaryAccuracy(), "prec": BinaryPrecision()})
    collection.update(torch.tensor([1, 0]), torch.tensor([1, 1]))  # forms the compute group
    acc, prec = (metric for _, metric in collection_items(collection))
    assert acc.tp is prec.tp  # a copy would not follow the group's later updates


class _WithMetric(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.acc = torchmetrics.SumMetric()
        self.inner = nn.ModuleDict({"mean": torchmetrics.MeanMetric()})


def test_metric_attributes_finds_submodules_at_any_depth() -> None:
    module = _WithMetric()
    found = metric_attributes(module, "acc", module.acc, None)
    assert found == {id(module.acc): "acc", id(module.inner["mean"]): "inner.mean"}
    assert metric_attributes(module, "acc", module.acc, found) is found  # cached when known


def test_metric_attributes_refuses_a_metric_the_module_does_not_hold() -> None:
    module = _WithMetric()
    with pytest.raises(MisconfigurationException, match=r"(?s)not an attribute of _WithMetric.*'acc', 'inner.mean'"):
        metric_attributes(module, "loose", torchmetrics.MeanMetric(), None)


def test_metric_attributes_sees_a_metric_added_after_the_first_lookup() -> None:
    module = _WithMetric()
    known = metric_attributes(module, "acc", module.acc, None)
    module.late = torchmetrics.MaxMetric()
    assert id(module.late) in metric_attributes(module, "late", module.late, known)
