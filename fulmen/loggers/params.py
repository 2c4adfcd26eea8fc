"""Pure transformations of hyperparameter and metric dicts, shared by the loggers."""

from __future__ import annotations

import inspect
import json
from argparse import Namespace
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, is_dataclass
from typing import Any

__all__ = [
    "convert_params",
    "flatten_dict",
    "sanitize_params",
    "sanitize_callable_params",
    "convert_json_serializable",
    "add_prefix",
]


def convert_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    """Hyperparameters as a plain dict (``None`` -> ``{}``, ``Namespace`` -> ``vars()``)."""
    if params is None:
        return {}
    if isinstance(params, Namespace):
        return dict(vars(params))
    return dict(params)


def flatten_dict(params: Mapping[Any, Any], delimiter: str = "/", parent_key: str = "") -> dict[str, Any]:
    """Nested dicts, Namespaces and dataclass instances flattened to ``{"a/b": v}`` keys.

    A list whose items are all dicts is flattened by index (``{"dl": [{"a": 1}]}`` ->
    ``{"dl/0/a": 1}``), as Lightning 2.6 does; any other list stays one value, the empty list
    included (Lightning 2.6 drops an empty list's key: a hyperparameter would vanish from the run).
    """
    result: dict[str, Any] = {}
    for key, value in params.items():
        new_key = f"{parent_key}{delimiter}{key}" if parent_key else str(key)
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        elif isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, MutableMapping):
            result.update(flatten_dict(value, delimiter=delimiter, parent_key=new_key))
        elif value and isinstance(value, list) and all(isinstance(item, MutableMapping) for item in value):
            for index, item in enumerate(value):
                result.update(flatten_dict(item, delimiter=delimiter, parent_key=f"{new_key}/{index}"))
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


def sanitize_callable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Callables replaced by something a config can show: a class by its name, a function by what
    it returns when called without arguments (its name if that fails or returns another callable).

    Lightning does this before handing hparams to W&B, whose config must be JSON.
    """
    return {key: _sanitize_callable(value) for key, value in params.items()}


def _sanitize_callable(value: Any) -> Any:
    if inspect.isclass(value):
        return value.__name__
    if not callable(value):
        return value
    try:
        result = value()
    except Exception:  # a callable that needs arguments: Lightning shows its name
        return getattr(value, "__name__", None)
    return value.__name__ if callable(result) else result


def convert_json_serializable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Values ``json.dumps`` cannot encode replaced by their ``str()`` (W&B's config is JSON)."""
    return {key: value if _is_json_serializable(value) else str(value) for key, value in params.items()}


def _is_json_serializable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return True
    try:
        json.dumps(value)
    except (TypeError, OverflowError, ValueError):
        return False
    return True


def add_prefix(metrics: Mapping[str, Any], prefix: str, separator: str) -> dict[str, Any]:
    """``{prefix}{separator}{key}`` for every key when ``prefix`` is non-empty."""
    if not prefix:
        return dict(metrics)
    return {f"{prefix}{separator}{key}": value for key, value in metrics.items()}
