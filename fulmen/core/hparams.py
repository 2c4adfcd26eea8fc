"""save_hyperparameters(): read the caller's ``__init__`` arguments into ``hparams``.

Shared by LightningModule and LightningDataModule. Lightning collects the arguments of the
``__init__`` that called ``save_hyperparameters`` (walking up through subclass ``__init__``
frames) so that ``load_from_checkpoint`` can rebuild the object; so do we.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from types import FrameType
from typing import Any

# AttributeDict lives with the hparams files (utilities.parsing, Lightning's import path); the
# name stays importable from here, where older fulmen checkpoints and user code find it.
from fulmen.utilities.parsing import AttributeDict

# What LightningCLI instantiates a class with: the parsed config plus `_instantiator`, stored by
# save_hyperparameters() instead of the __init__ arguments (Lightning's load_from_checkpoint_support).
_given_hyperparameters: ContextVar[dict[str, Any] | None] = ContextVar("_given_hyperparameters", default=None)


@contextlib.contextmanager
def given_hyperparameters_context(hparams: dict[str, Any], instantiator: str) -> Iterator[None]:
    """While active, ``save_hyperparameters()`` stores ``hparams`` and ``_instantiator``: the config a
    CLI built the object from, so ``load_from_checkpoint`` can rebuild it through ``instantiator``
    (for arguments that are themselves classes given by ``class_path``)."""
    token = _given_hyperparameters.set({**hparams, "_instantiator": instantiator})
    try:
        yield
    finally:
        _given_hyperparameters.reset(token)


def _init_args_of(frame: FrameType) -> dict[str, Any]:
    """Arguments of the ``__init__`` running in ``frame`` and of every subclass ``__init__`` above it."""
    collected: dict[str, Any] = {}
    self_obj = frame.f_locals.get("self")
    current: FrameType | None = frame
    frames = []
    while current is not None and current.f_code.co_name == "__init__" and current.f_locals.get("self") is self_obj:
        frames.append(current)
        current = current.f_back
    # the __init__ that called save_hyperparameters wins; subclass __init__s above it add names
    for fr in frames:
        info = inspect.getargvalues(fr)
        for name in info.args[1:]:
            collected.setdefault(name, fr.f_locals.get(name))
        if info.varargs and fr.f_locals.get(info.varargs):
            collected.setdefault(info.varargs, fr.f_locals[info.varargs])
        if info.keywords:
            for key, value in (fr.f_locals.get(info.keywords) or {}).items():
                collected.setdefault(key, value)
    return collected


def collect_hparams(
    args: tuple[Any, ...], ignore: str | Iterable[str] | None, frame: FrameType | None
) -> dict[str, Any]:
    """The hyperparameters ``save_hyperparameters(*args, ignore=...)`` should store."""
    ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
    if len(args) == 1 and isinstance(args[0], (Mapping, argparse.Namespace)):
        given = args[0]
        values = dict(vars(given)) if isinstance(given, argparse.Namespace) else dict(given)
        return {k: v for k, v in values.items() if k not in ignored}
    from_cli = _given_hyperparameters.get()
    if from_cli is not None:
        init_args = dict(from_cli)
    else:
        init_args = _init_args_of(frame) if frame is not None else {}
    if args:
        missing = [a for a in args if not isinstance(a, str) or a not in init_args]
        if missing:
            raise ValueError(
                f"save_hyperparameters() got {missing!r}, which are not arguments of __init__ "
                f"(arguments: {sorted(init_args)}).\n"
                "HINT: pass argument names as strings, or one dict / argparse.Namespace."
            )
        init_args = {a: init_args[a] for a in args}
    return {k: v for k, v in init_args.items() if k not in ignored and not k.startswith("__")}


class HyperparametersMixin:
    """``save_hyperparameters()`` and ``hparams`` for modules and datamodules."""

    # Lightning's names for the checkpoint keys the hyperparameters are saved under
    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: str | Iterable[str] | None = None,
        frame: FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Store the calling ``__init__``'s arguments (or the given dict/Namespace/names) in ``hparams``."""
        if frame is None:
            current = inspect.currentframe()
            frame = current.f_back if current is not None else None
        hp = collect_hparams(args, ignore, frame)
        object.__setattr__(self, "_hparams", AttributeDict(hp))
        object.__setattr__(self, "_hparams_initial", copy.deepcopy(AttributeDict(hp)))
        object.__setattr__(self, "_log_hyperparams", logger)

    @property
    def hparams(self) -> AttributeDict:
        if not hasattr(self, "_hparams"):
            object.__setattr__(self, "_hparams", AttributeDict())
        return self._hparams  # type: ignore[attr-defined]

    def remove_ignored_hparams(self, ignore_list: list[str]) -> None:
        """Drop hyperparameters a base class saved that a subclass does not want (absent names are fine).

        As in Lightning, ``hparams_initial`` (what loggers recorded) keeps them.
        """
        for key in ignore_list:
            self.hparams.pop(key, None)

    @property
    def hparams_initial(self) -> AttributeDict:
        """The hyperparameters as they were when saved (what loggers record)."""
        if not hasattr(self, "_hparams_initial"):
            return AttributeDict()
        return copy.deepcopy(self._hparams_initial)  # type: ignore[attr-defined]
