"""ModelCheckpoint's constructor arguments: what the trigger defaults mean, which values are refused.

Kept apart from the callback so the rules read in one place and can be tested without
building one. The messages are Lightning's (with a HINT), because users search for them.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from typing import Any

from fulmen.errors import MisconfigurationException


def default_triggers(
    every_n_train_steps: int | None, every_n_epochs: int | None, train_time_interval: timedelta | None
) -> tuple[int, int]:
    """``(every_n_epochs, every_n_train_steps)`` with 0 for "off"; no trigger at all means once per epoch."""
    if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
        every_n_epochs, every_n_train_steps = 1, 0
    return every_n_epochs or 0, every_n_train_steps or 0


def validate_arguments(
    save_top_k: int,
    monitor: str | None,
    every_n_train_steps: int,
    every_n_epochs: int,
    train_time_interval: timedelta | None,
) -> None:
    """Raise MisconfigurationException for a configuration Lightning refuses.

    One trigger per callback, as in Lightning (the HINT says how to have several schedules).
    Without ``monitor`` nothing ranks the files, so only "keep the latest" (1), "keep all" (-1)
    or "keep none" (0) mean something.
    """
    if save_top_k < -1:
        raise MisconfigurationException(f"Invalid value for save_top_k={save_top_k}. Must be >= -1")
    if every_n_train_steps < 0:
        raise MisconfigurationException(f"Invalid value for every_n_train_steps={every_n_train_steps}. Must be >= 0")
    if every_n_epochs < 0:
        raise MisconfigurationException(f"Invalid value for every_n_epochs={every_n_epochs}. Must be >= 0")
    triggers = (every_n_train_steps >= 1) + (every_n_epochs >= 1) + (train_time_interval is not None)
    if triggers > 1:
        raise MisconfigurationException(
            f"Combination of parameters every_n_train_steps={every_n_train_steps}, "
            f"every_n_epochs={every_n_epochs} and train_time_interval={train_time_interval} "
            "should be mutually exclusive.\nHINT: use one ModelCheckpoint per schedule."
        )
    if monitor is None and save_top_k not in (-1, 0, 1):
        raise MisconfigurationException(
            f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None) is not a valid configuration. "
            "No quantity for top_k to track.\nHINT: set monitor='<a logged metric>' or save_top_k=-1."
        )



_LEGACY_SPELLINGS = {
    "filepath": "dirpath=<folder>, filename=<template>",
    "save_best_only": "save_top_k=1 (True) or save_top_k=-1 (False)",
    "prefix": "filename='<prefix>-{epoch}-{step}'",
    "period": "every_n_epochs",
}


def legacy_arguments(
    legacy: dict[str, Any], dirpath: Any, filename: str | None, save_top_k: int, every_n_epochs: int | None
) -> tuple[Any, str | None, int, int | None, str | None]:
    """ModelCheckpoint's Lightning 0.x/1.x arguments as modern ones, one warning each.

    Returns ``(dirpath, filename, save_top_k, every_n_epochs, last_name)``; ``last_name`` is the
    ``last.ckpt`` stem when ``prefix`` renames it (1.x wrote ``<prefix>-last.ckpt``), else None.
    ``filepath`` is a folder when it is one (or ends with a separator), otherwise
    ``<folder>/<filename template>`` as 1.x split it.
    """
    unknown = sorted(set(legacy) - set(_LEGACY_SPELLINGS))
    if unknown:
        raise TypeError(
            f"ModelCheckpoint() got unexpected keyword argument(s) {unknown}.\n"
            f"HINT: its legacy arguments are {sorted(_LEGACY_SPELLINGS)}; see ModelCheckpoint's docstring for the rest."
        )
    for name in legacy:
        warnings.warn(
            f"ModelCheckpoint({name}=...) is a legacy argument from older Lightning versions; use "
            f"{_LEGACY_SPELLINGS[name]} instead.",
            DeprecationWarning,
            stacklevel=3,  # the user's ModelCheckpoint(...) line
        )
    filepath = legacy.get("filepath")
    if filepath is not None:
        if dirpath is not None or filename is not None:
            raise MisconfigurationException(
                f"ModelCheckpoint(filepath={filepath!r}) cannot be combined with dirpath or filename.\n"
                "HINT: drop filepath and pass dirpath=<folder>, filename=<template>."
            )
        text = os.fspath(filepath)
        if os.path.isdir(text) or text.endswith(os.sep):
            dirpath = text
        else:
            dirpath, filename = os.path.split(text)
            dirpath = dirpath or None
            filename = filename.removesuffix(".ckpt")
    if "save_best_only" in legacy:
        save_top_k = 1 if legacy["save_best_only"] else -1
    if "period" in legacy:
        every_n_epochs = legacy["period"]
    last_name = None
    if legacy.get("prefix"):
        filename = f"{legacy['prefix']}-{filename or '{epoch}-{step}'}"
        last_name = f"{legacy['prefix']}-last"
    return dirpath, filename, save_top_k, every_n_epochs, last_name
