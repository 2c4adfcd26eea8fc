"""Hyperparameters in checkpoints as plain data, so that every file fulmen writes loads safely.

``save_hyperparameters()`` often holds an ``argparse.Namespace``, a (nested) dataclass, an enum
member or a ``pathlib`` path. Pickled as they are, ``torch.load(weights_only=True)`` refuses
them, and a run that was preempted could never load its own resume checkpoint. So
``encode_hparams`` stores each such value as a small dict with a type tag::

    {"__fulmen_type__": "namespace", "fields": {...}}
    {"__fulmen_type__": "dataclass", "class": "pkg.mod:Config", "fields": {...}}
    {"__fulmen_type__": "enum", "class": "pkg.mod:Mode", "name": "FAST"}
    {"__fulmen_type__": "path", "class": "pathlib:PosixPath", "path": "/data"}
    {"__fulmen_type__": "attribute_dict", "fields": {...}}

and ``decode_hparams`` rebuilds the original objects. The keys stay Lightning's
(``hyper_parameters``); Lightning itself reads such a value as the tagged dict.

Classes are looked up only among modules that are already imported (``sys.modules``): a
checkpoint must never make us import a module it names, which would run that module's code.
The script that saved the file has imported its config classes again when it resumes; when a
class is not found, a dataclass comes back as an ``argparse.Namespace`` of its fields and an
enum member as its name, with a warning that says which module to import first. Values of any
other type are stored as they are; ``opaque_hparams`` names them (such a file needs the full
unpickler: ``unsafe_full_unpickle=True``).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import pathlib
import sys
import warnings
from collections import OrderedDict
from typing import Any

import torch

TYPE_TAG = "__fulmen_type__"
# values the safe loader (torch.load(weights_only=True)) accepts without a type tag; exact
# types, since a subclass of int or str (an IntEnum member) is pickled as its own class
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def _is_plain(value: Any) -> bool:
    return type(value) in _PLAIN or isinstance(value, torch.Tensor)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def encode_hparams(value: Any) -> Any:
    """``value`` with every Namespace, dataclass, enum member and path replaced by tagged plain data.

    Containers (dict, list, tuple, set) are walked; other values are returned unchanged.
    """
    from fulmen.core.hparams import AttributeDict

    if _is_plain(value):
        return value
    if isinstance(value, enum.Enum):
        return {TYPE_TAG: "enum", "class": _class_path(type(value)), "name": value.name}
    if isinstance(value, AttributeDict):
        return {TYPE_TAG: "attribute_dict", "fields": {k: encode_hparams(v) for k, v in value.items()}}
    if type(value) in (dict, OrderedDict):
        return type(value)((k, encode_hparams(v)) for k, v in value.items())
    if type(value) in (list, tuple, set):
        return type(value)(encode_hparams(v) for v in value)
    if isinstance(value, argparse.Namespace):
        return {TYPE_TAG: "namespace", "fields": {k: encode_hparams(v) for k, v in vars(value).items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = vars(value) if hasattr(value, "__dict__") else {
            f.name: getattr(value, f.name) for f in dataclasses.fields(value) if hasattr(value, f.name)
        }
        return {
            TYPE_TAG: "dataclass",
            "class": _class_path(type(value)),
            "fields": {k: encode_hparams(v) for k, v in fields.items()},
        }
    if isinstance(value, pathlib.PurePath):
        return {TYPE_TAG: "path", "class": _class_path(type(value)), "path": str(value)}
    return value


def opaque_hparams(encoded: Any, where: str = "hparams") -> list[str]:
    """Where ``encoded`` (an ``encode_hparams`` result) still holds values the safe loader refuses,
    as ``"hparams['key']: TypeName"`` lines (empty when the whole value loads safely)."""
    if _is_plain(encoded):
        return []
    if type(encoded) in (dict, OrderedDict):
        found = []
        for key, value in encoded.items():
            inner = value.get("fields") if isinstance(value, dict) and TYPE_TAG in value else value
            found += opaque_hparams(inner, f"{where}[{key!r}]") if inner is not None else []
        return found
    if type(encoded) in (list, tuple, set):
        return [line for i, v in enumerate(encoded) for line in opaque_hparams(v, f"{where}[{i}]")]
    return [f"{where}: {type(encoded).__module__}.{type(encoded).__qualname__}"]


def decode_hparams(value: Any) -> Any:
    """Undo ``encode_hparams``: tagged dicts become the objects they describe again."""
    if type(value) in (dict, OrderedDict):
        if isinstance(value.get(TYPE_TAG), str):
            return _decode_tagged(value)
        return type(value)((k, decode_hparams(v)) for k, v in value.items())
    if type(value) in (list, tuple, set):
        return type(value)(decode_hparams(v) for v in value)
    return value


def _decode_tagged(value: dict[str, Any]) -> Any:
    from fulmen.core.hparams import AttributeDict

    kind = value[TYPE_TAG]
    fields = {k: decode_hparams(v) for k, v in (value.get("fields") or {}).items()}
    if kind == "namespace":
        return argparse.Namespace(**fields)
    if kind == "attribute_dict":
        return AttributeDict(fields)
    if kind == "path":
        cls = _imported_class(value["class"])
        if not (isinstance(cls, type) and issubclass(cls, pathlib.PurePath)):
            cls = pathlib.Path
        return cls(value["path"])
    if kind == "enum":
        cls = _imported_class(value["class"])
        if isinstance(cls, type) and issubclass(cls, enum.Enum) and value["name"] in cls.__members__:
            return cls[value["name"]]
        _warn_not_rebuilt(value["class"], "enum", f"its member name {value['name']!r}")
        return value["name"]
    if kind == "dataclass":
        cls = _imported_class(value["class"])
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            # as unpickling does: no __init__ (no validation or side effects run twice)
            obj = cls.__new__(cls)
            for key, field_value in fields.items():
                object.__setattr__(obj, key, field_value)
            return obj
        _warn_not_rebuilt(value["class"], "dataclass", "an argparse.Namespace of its fields")
        return argparse.Namespace(**fields)
    raise ValueError(
        f"Checkpoint hyperparameters hold a value tagged {TYPE_TAG}={kind!r}; expected one of "
        "'namespace', 'dataclass', 'enum', 'path', 'attribute_dict'.\n"
        "HINT: the file was written by a newer fulmen; load it with that version."
    )


def _imported_class(path: str) -> Any:
    """The object ``"module:qualname"`` names, if that module is imported already (else None)."""
    module_name, _, qualname = path.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split(".") if obj is not None else ():
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _warn_not_rebuilt(class_path: str, kind: str, instead: str) -> None:
    module_name = class_path.partition(":")[0]
    warnings.warn(
        f"Checkpoint hyperparameters hold a value of the {kind} class {class_path!r}, which is not a "
        f"{kind} in the modules imported now; it is given back as {instead}.\n"
        f"HINT: import {module_name!r} before loading the checkpoint to get {class_path!r} back "
        "(fulmen never imports a module a checkpoint names).",
        RuntimeWarning,
        stacklevel=4,
    )


HPARAMS_KEYS = ("hyper_parameters", "datamodule_hyper_parameters")


def decode_checkpoint_hparams(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the module's and the datamodule's hyperparameters of a loaded checkpoint in place
    (files without tags, Lightning's included, come back unchanged); returns ``checkpoint``."""
    for key in HPARAMS_KEYS:
        if key in checkpoint:
            checkpoint[key] = decode_hparams(checkpoint[key])
    return checkpoint
