"""``load_from_checkpoint`` for LightningModule and LightningDataModule classes.

Rebuilds the object from the hyperparameters stored in the checkpoint (overridable by
keyword arguments or an ``hparams.yaml``), then loads the module's weights. It reads files
with ``torch.load(weights_only=True)``; a checkpoint whose hyperparameters hold arbitrary
Python objects needs ``unsafe_full_unpickle=True``, which can execute code from the file and
is only for checkpoints you trust.
"""

from __future__ import annotations

import ast
import csv
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from fulmen.core.hparams import AttributeDict
from fulmen.errors import CheckpointError
from fulmen.runtime.checkpoint import load_checkpoint, require_keys
from fulmen.runtime.checkpoint_hparams import decode_checkpoint_hparams
from fulmen.utilities.rank_zero import rank_zero_warn

T = TypeVar("T")

# (hyperparameters key, hparams name key) per kind of class, as Lightning names them
_MODULE_KEYS = ("hyper_parameters", "hparams_name")
_DATAMODULE_KEYS = ("datamodule_hyper_parameters", "datamodule_hparams_name")


def load_hparams_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Hyperparameters from a ``.yaml``/``.yml`` file (as loggers write) or a Lightning tags ``.csv``."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        with open(file, encoding="utf-8") as handle:
            try:
                data = yaml.safe_load(handle)
            except yaml.YAMLError as err:
                raise CheckpointError(
                    f"hparams_file {str(file)!r} is not plain YAML: {err}\n"
                    "HINT: keep hparams.yaml to numbers, strings, lists and mappings."
                ) from err
        return dict(data or {})
    if suffix == ".csv":
        with open(file, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return {row["key"]: _literal(row["value"]) for row in rows}
    raise ValueError(f"hparams_file={str(file)!r}: a .csv, .yml or .yaml file is required.")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _init_parameters(cls: type) -> tuple[list[str], list[str], bool]:
    """Names ``cls.__init__`` accepts, those without a default, and whether it takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [p.name for p in named if p.default is p.empty]
    return [p.name for p in named], required, any(p.kind is p.VAR_KEYWORD for p in params)


def _constructor_kwargs(
    cls: type, checkpoint: Mapping[str, Any], hp_key: str, name_key: str, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    names, required, takes_var_kwargs = _init_parameters(cls)
    loaded: Any = dict(checkpoint.get(hp_key) or {})
    args_name = checkpoint.get(name_key)
    # __init__(self, hparams) with save_hyperparameters(hparams): the whole dict is one argument
    if args_name and args_name in names:
        loaded = {args_name: AttributeDict(loaded)}
    elif loaded and not takes_var_kwargs and not set(loaded) & set(names):
        # the same, in a file that does not name the argument: none of the stored keys is an
        # argument, and exactly one required argument is left to receive them
        missing = [name for name in required if name not in overrides]
        if len(missing) == 1:
            loaded = {missing[0]: AttributeDict(loaded)}
    kwargs = {**loaded, **overrides}
    kwargs.pop("_instantiator", None)
    if not takes_var_kwargs:
        kwargs = {k: v for k, v in kwargs.items() if k in names}
    return kwargs


# The instantiators a checkpoint may name (LightningCLI's), each mapped to fulmen's: a checkpoint
# written by Lightning's CLI loads through fulmen's. Anything else is refused: it would run code
# named by the file.
ALLOWED_INSTANTIATORS = {
    "fulmen.cli.instantiate_module": "fulmen.cli.instantiate_module",
    "pytorch_lightning.cli.instantiate_module": "fulmen.cli.instantiate_module",
    "lightning.pytorch.cli.instantiate_module": "fulmen.cli.instantiate_module",
}


def _instantiator_of(cls: type, hparams: Mapping[str, Any]) -> Callable[[type, dict[str, Any]], Any] | None:
    """The checkpoint's ``_instantiator`` (set by LightningCLI), checked against the allowlist."""
    path = hparams.get("_instantiator")
    if path is None:
        return None
    if not isinstance(path, str) or path not in ALLOWED_INSTANTIATORS:
        raise ValueError(
            f"The instantiator {path!r} from the checkpoint is not in the allowlist of trusted instantiators and "
            "was blocked to prevent arbitrary code execution.\nHINT: if you trust this checkpoint, add the path "
            "to `fulmen.core.saving.ALLOWED_INSTANTIATORS` before loading."
        )
    class_path = hparams.get("_class_path")
    if class_path is not None and not _is_imported_subclass(class_path, cls):
        raise ValueError(
            f"The class {class_path!r} requested by the checkpoint does not resolve to an already imported subclass "
            f"of {cls.__name__} and was blocked to prevent arbitrary code execution.\nHINT: if you trust this "
            "checkpoint, import the module that defines the class before loading."
        )
    module_name, name = ALLOWED_INSTANTIATORS[path].rsplit(".", 1)
    # by name, on use: the CLI layer sits above core, and only a CLI-made checkpoint needs it
    return getattr(importlib.import_module(module_name), name)


def _is_imported_subclass(class_path: Any, cls: type) -> bool:
    """Whether ``class_path`` names a subclass of ``cls`` that is already imported (nothing new is imported)."""
    if not isinstance(class_path, str):
        return False
    module_name, _, name = class_path.rpartition(".")
    target = getattr(sys.modules.get(module_name), name, None)
    return isinstance(target, type) and issubclass(target, cls)


def _resolve_strict(module: Any, strict: bool | None) -> bool:
    """Lightning: ``strict=None`` follows ``module.strict_loading``; a set value that contradicts it is an error."""
    loading = bool(getattr(module, "strict_loading", True))
    if strict is None:
        return loading
    # Lightning's _strict_loading is set by assigning on the instance only (a class attribute does not count)
    if "strict_loading" in vars(module) and strict != loading:
        raise ValueError(
            f"You set `.load_from_checkpoint(..., strict={strict!r})` which is in conflict with "
            f"`{type(module).__name__}.strict_loading={loading!r}`. Please set the same value for both of them.\n"
            "HINT: pass strict=None (the default) to follow strict_loading."
        )
    return strict


def load_from_checkpoint(
    cls: type[T],
    checkpoint_path: str | os.PathLike[str],
    map_location: Any = None,
    hparams_file: str | os.PathLike[str] | None = None,
    strict: bool | None = None,
    *,
    unsafe_full_unpickle: bool = False,
    **overrides: Any,
) -> T:
    """Build ``cls`` from a checkpoint's hyperparameters (``overrides`` win) and load its state.

    For a LightningModule: ``on_load_checkpoint(checkpoint)`` then ``load_state_dict`` with
    ``strict`` (None: the module's ``strict_loading``, as in Lightning); the model ends on the device its weights were loaded to
    (``map_location``). For a LightningDataModule: its stored state, if any.
    ``unsafe_full_unpickle=True`` allows checkpoints holding arbitrary Python objects; it can
    run code from the file, so use it only for trusted files.
    """
    from fulmen.core.datamodule import LightningDataModule

    checkpoint = load_checkpoint(checkpoint_path, map_location, unsafe_full_unpickle=unsafe_full_unpickle)
    decode_checkpoint_hparams(checkpoint)  # the Namespaces / dataclasses / enums / paths that were saved
    is_datamodule = issubclass(cls, LightningDataModule)
    hp_key, name_key = _DATAMODULE_KEYS if is_datamodule else _MODULE_KEYS
    if hparams_file is not None:
        checkpoint[hp_key] = load_hparams_file(hparams_file)
    kwargs = _constructor_kwargs(cls, checkpoint, hp_key, name_key, overrides)
    instantiator = _instantiator_of(cls, checkpoint.get(hp_key) or {})
    obj = instantiator(cls, kwargs) if instantiator else cls(**kwargs)
    if is_datamodule:
        state = checkpoint.get(cls.__qualname__)
        if state:
            obj.load_state_dict(state)  # type: ignore[attr-defined]
        return obj
    require_keys(checkpoint, ("state_dict",), checkpoint_path, "load the model weights")
    obj.on_load_checkpoint(checkpoint)  # type: ignore[attr-defined]
    state_dict = checkpoint["state_dict"]
    strict = _resolve_strict(obj, strict)
    result = obj.load_state_dict(state_dict, strict=strict)  # type: ignore[attr-defined]
    if not strict:
        if result.missing_keys:
            rank_zero_warn(
                f"Found keys that are in the model state dict but not in the checkpoint: {result.missing_keys}"
            )
        if result.unexpected_keys:
            rank_zero_warn(
                f"Found keys that are not in the model state dict but in the checkpoint: {result.unexpected_keys}"
            )
    if not state_dict:
        rank_zero_warn(f"The state dict in {str(checkpoint_path)!r} contains no parameters.")
        return obj
    device = next((t.device for t in state_dict.values() if isinstance(t, torch.Tensor)), torch.device("cpu"))
    return obj.to(device)  # type: ignore[attr-defined]
