"""Pure transformations of hyperparameter and metric dicts, shared by the loggers."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, is_dataclass
from typing import Any

__all__ = ["convert_params", "flatten_dict", "sanitize_params", "add_prefix"]


def convert_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    """Hyperparameters as a plain dict (``None`` -> ``{}``, ``Namespace`` -> ``vars()``)."""
    if params is None:
        return {}
    if isinstance(params, Namespace):
        return dict(vars(params))
    return dict(params)


def flatten_dict(params: Mapping[Any, Any], delimiter: str = "/", parent_key: str = "") -> dict[str, Any]:
    """Nested dicts, Namespaces and dataclass instances flattened to ``{"a/b": v}`` keys."""
    result: dict[str, Any] = {}
    for key, value in params.items():
        new_key = f"{parent_key}{delimiter}{key}" if parent_key else str(key)
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        elif isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, MutableMapping):
            result.update(flatten_dict(value, delimiter=delimiter, parent_key=new_key))
        else:
            result[new_key] = value
    return result


def sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Values TensorBoard's hparams plugin accepts: bool/int/float/str/Tensor; others as ``str()``.

    NumPy scalars become Python numbers rather than strings, so they stay filterable in the UI;
    tensors with more than one dimension become strings (the plugin cannot show them).
    """
    import torch

    result: dict[str, Any] = {}
    for key, value in params.items():
        if hasattr(value, "item") and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
            value = value.item()
        elif isinstance(value, torch.Tensor):
            value = str(value) if value.ndim > 1 else value
        elif type(value) not in (bool, int, float, str):
            value = str(value)
        result[key] = value
    return result


def add_prefix(metrics: Mapping[str, Any], prefix: str, separator: str) -> dict[str, Any]:
    """``{prefix}{separator}{key}`` for every key when ``prefix`` is non-empty."""
    if not prefix:
        return dict(metrics)
    return {f"{prefix}{separator}{key}": value for key, value in metrics.items()}
