"""Hyperparameter containers and their ``hparams.yaml`` files (Lightning's formats).

``save_hparams_to_yaml`` / ``load_hparams_from_yaml`` are what loggers write next to their
metrics and what ``load_from_checkpoint(hparams_file=...)`` reads. PyYAML is imported inside
the functions so that ``import fulmen`` never loads it.
"""

from __future__ import annotations

import os
import pickle
import warnings
from argparse import Namespace
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "AttributeDict", "save_hparams_to_yaml", "load_hparams_from_yaml", "is_picklable",
    "lightning_hasattr", "lightning_getattr", "lightning_setattr",
]


class AttributeDict(dict):
    """A dict whose keys are also attributes (``hparams.lr`` and ``hparams["lr"]``).

    One class for the whole package (``hparams`` are instances of it), here at Lightning's import
    path and below ``fulmen.core``, which re-exports it.
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(f"'AttributeDict' has no attribute {key!r}; keys: {sorted(self)}") from err

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


def _yaml_ready(value: Any) -> Any:
    """Turn values PyYAML would write as Python-object tags into plain data where that is lossless."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Namespace):
        return {k: _yaml_ready(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {k: _yaml_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_ready(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_yaml_ready(v) for v in value)
    return value


def save_hparams_to_yaml(config_yaml: str | os.PathLike[str], hparams: Mapping[str, Any] | Namespace) -> None:
    """Write ``hparams`` to ``config_yaml`` in the layout Lightning writes (``yaml.dump``, keys sorted).

    A value that cannot be written so that ``yaml.full_load`` reads it back (a model, an open
    file, an arbitrary object) is left out with a warning naming the key, as Lightning does;
    enums are stored by name and paths as strings.

    Raises:
        RuntimeError: the folder of ``config_yaml`` does not exist.
        TypeError: ``hparams`` is neither a mapping nor an ``argparse.Namespace``.
    """
    import yaml

    folder = os.path.dirname(os.fspath(config_yaml)) or "."
    if not os.path.isdir(folder):
        raise RuntimeError(
            f"Missing folder: {folder}. Cannot write the hyperparameter file {os.fspath(config_yaml)!r}.\n"
            "HINT: create the folder first (the loggers write hparams.yaml into their log_dir)."
        )
    if isinstance(hparams, Namespace):
        hparams = vars(hparams)
    if not isinstance(hparams, Mapping):
        raise TypeError(
            f"hparams must be a dict or argparse.Namespace, got {type(hparams).__name__}.\n"
            "HINT: pass dict(hparams) or vars(args)."
        )

    allowed: dict[str, Any] = {}
    for key, value in hparams.items():
        value = _yaml_ready(value)
        try:
            # Round-trip through full_load: tags it refuses (python/object...) would make the file
            # unreadable for load_hparams_from_yaml, so such values are skipped, not written.
            yaml.full_load(yaml.dump(value))
        except (TypeError, ValueError, yaml.YAMLError, RecursionError):
            warnings.warn(
                f"Skipping '{key}' parameter because it is not possible to safely dump to YAML "
                f"(type {type(value).__name__}).",
                stacklevel=2,
            )
            continue
        allowed[key] = value

    with open(config_yaml, "w", newline="") as fp:
        yaml.dump(allowed, fp)


def load_hparams_from_yaml(config_yaml: str | os.PathLike[str], use_omegaconf: bool = False) -> dict[str, Any]:
    """Read a ``hparams.yaml`` written by fulmen or Lightning; ``{}`` with a warning when it is missing.

    ``use_omegaconf`` is accepted for signature compatibility with Lightning and ignored (fulmen
    does not depend on OmegaConf).
    """
    import yaml

    path = Path(config_yaml)
    if not path.is_file():
        from fulmen.utilities.rank_zero import rank_zero_warn

        rank_zero_warn(f"Missing Tags: {os.fspath(config_yaml)}.", category=RuntimeWarning)
        return {}
    with open(path) as fp:
        hparams = yaml.full_load(fp)
    return dict(hparams) if hparams else {}


def is_picklable(obj: object) -> bool:
    """Whether ``obj`` survives ``pickle.dumps`` (what ``save_hyperparameters`` and spawned ranks need)."""
    try:
        pickle.dumps(obj)
    except (pickle.PickleError, AttributeError, RuntimeError, TypeError):
        return False
    return True


# ---- Lightning's attribute lookup for the tuner: model, its hparams, the datamodule ------------
def _attr_holders(model: Any, attribute: str) -> list[Any]:
    """Every object or dict that holds ``attribute``: the module, ``module.hparams``, the
    trainer's datamodule and its ``hparams`` (Lightning's order)."""
    holders: list[Any] = []
    if hasattr(model, attribute):
        holders.append(model)
    hparams = getattr(model, "hparams", None)
    if hparams is not None and attribute in hparams:
        holders.append(hparams)
    trainer = getattr(model, "_trainer", None)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is not None:
        if hasattr(datamodule, attribute):
            holders.append(datamodule)
        dm_hparams = getattr(datamodule, "hparams", None)
        if dm_hparams is not None and attribute in dm_hparams:
            holders.append(dm_hparams)
    return holders


def _missing(attribute: str) -> AttributeError:
    return AttributeError(
        f"{attribute} is neither stored in the model namespace nor the `hparams` namespace/dict, nor the datamodule."
    )


def lightning_hasattr(model: Any, attribute: str) -> bool:
    """Whether ``attribute`` is on the module, in its hparams, or on the trainer's datamodule."""
    return bool(_attr_holders(model, attribute))


def lightning_getattr(model: Any, attribute: str) -> Any:
    """``attribute`` from the last of its holders (Lightning keeps that order for compatibility)."""
    holders = _attr_holders(model, attribute)
    if not holders:
        raise _missing(attribute)
    holder = holders[-1]
    return holder[attribute] if isinstance(holder, dict) else getattr(holder, attribute)


def lightning_setattr(model: Any, attribute: str, value: Any) -> None:
    """Set ``attribute`` on every holder, so the module, its hparams and the datamodule agree
    (what the tuner does with the learning rate and the batch size it found)."""
    holders = _attr_holders(model, attribute)
    if not holders:
        raise _missing(attribute)
    for holder in holders:
        if isinstance(holder, dict):
            holder[attribute] = value
        else:
            setattr(holder, attribute, value)
