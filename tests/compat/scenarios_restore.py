"""Compatibility scenarios about console lines: what a user sees when ``fit``/``validate``/``test``
load ``ckpt_path`` (Lightning's ``rank_zero_info`` messages, issue #14 item 4), and the line
saying why ``fit`` stopped.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.compat.models import base_module, loader, trainer_kwargs


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def restore_messages(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The INFO lines that mention the checkpoint, per call, with the folder written as <root>."""
    module = base_module(pl)
    first = pl.Trainer(**trainer_kwargs(str(root), max_steps=2))
    first.fit(module(), loader(8))
    path = str(root / "state.ckpt")
    first.save_checkpoint(path)

    package = logging.getLogger(pl.__name__)  # rank_zero_info's logger is a child of the package's
    lines, level = _Lines(), package.level
    package.addHandler(lines)
    package.setLevel(logging.INFO)
    observed: dict[str, Any] = {}
    try:
        calls = {
            "fit": lambda t: t.fit(module(), loader(8), ckpt_path=path),
            "validate": lambda t: t.validate(module(), loader(4), ckpt_path=path, verbose=False),
            "test": lambda t: t.test(module(), loader(4), ckpt_path=path, verbose=False),
        }
        for name, call in calls.items():
            lines.lines.clear()
            call(pl.Trainer(**trainer_kwargs(str(root), max_steps=3)))
            observed[name] = [line.replace(str(root), "<root>") for line in lines.lines if "checkpoint" in line]
    finally:
        package.removeHandler(lines)
        package.setLevel(level)
    return observed


def fit_stop_messages(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The INFO lines that say why ``fit`` ended: max_epochs, max_steps (mid-epoch), max_epochs=0,
    an early stop (a debug line in Lightning: nothing shown), and no training batches."""
    module = base_module(pl)

    class StopsEarly(module):  # type: ignore[misc, valid-type]
        def on_train_epoch_end(self) -> None:
            self.trainer.should_stop = True

    package = logging.getLogger(pl.__name__)
    lines, level = _Lines(), package.level
    package.addHandler(lines)
    package.setLevel(logging.INFO)
    runs = {
        "max_epochs": (module, {"max_epochs": 2}, 8),
        "max_steps": (module, {"max_steps": 3, "max_epochs": -1}, 8),
        "max_epochs_0": (module, {"max_epochs": 0}, 8),
        "should_stop": (StopsEarly, {"max_epochs": 5}, 8),
        "no_batches": (module, {"max_epochs": 2, "limit_train_batches": 0}, 8),
    }
    observed: dict[str, Any] = {}
    try:
        for name, (cls, flags, n) in runs.items():
            lines.lines.clear()
            pl.Trainer(**trainer_kwargs(str(root), **flags)).fit(cls(), loader(n))
            observed[name] = [line for line in lines.lines if "stopped" in line]
    finally:
        package.removeHandler(lines)
        package.setLevel(level)
    return observed


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "restore_messages": restore_messages,
    "fit_stop_messages": fit_stop_messages,
}
