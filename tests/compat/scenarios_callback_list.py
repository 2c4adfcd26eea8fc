"""Compatibility scenarios: ``trainer.callbacks`` changed while a run is under way.

Lightning walks ``trainer.callbacks`` at every hook call, so a callback appended in
``on_fit_start`` gets every later hook (and that same ``on_fit_start`` too), one removed stops
getting them, and a list assigned to ``trainer.callbacks`` is used from the next hook call.
fulmen looks the overriding callbacks up once per hook name; these runs pin down that the
look-up follows every such change.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from tests.compat.models import base_module, loader, recording_callback, trainer_kwargs


def _fit(pl: ModuleType, root: Path, callbacks: list[Any], **flags: Any) -> Any:
    """fit 2 epochs x 2 batches with 1 validation batch per epoch (no sanity check)."""
    trainer = pl.Trainer(
        **trainer_kwargs(str(root), limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                         callbacks=callbacks, **flags)
    )  # fmt: skip
    trainer.fit(base_module(pl)(), loader(8), loader(4))
    return trainer


def callback_appended_in_on_fit_start(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A callback appends a recording callback to ``trainer.callbacks`` in ``on_fit_start``."""
    calls: list[str] = []
    added = recording_callback(pl, calls)

    class Adder(pl.Callback):
        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            trainer.callbacks.append(added)

    trainer = _fit(pl, root, [Adder()])
    return {"added_calls": calls, "added_is_listed": added in trainer.callbacks}


def callback_appended_in_batch_hook(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Appended in the first ``on_train_batch_start``: does it get that very call, and the rest?"""
    calls: list[str] = []
    added = recording_callback(pl, calls)

    class Adder(pl.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if added not in trainer.callbacks:
                trainer.callbacks.append(added)

    _fit(pl, root, [Adder()], max_epochs=1)
    return {"added_calls": calls}


def callback_removed_mid_fit(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A recording callback removed from ``trainer.callbacks`` after the first training batch."""
    calls: list[str] = []
    recorder = recording_callback(pl, calls)

    class Remover(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if recorder in trainer.callbacks:
                trainer.callbacks.remove(recorder)

    _fit(pl, root, [Remover(), recorder], max_epochs=1)
    return {"recorder_calls": calls}


def callbacks_assigned_mid_fit(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``trainer.callbacks = [...]`` (a new list with one more callback) at the second epoch's start."""
    calls: list[str] = []
    added = recording_callback(pl, calls)

    class Assigner(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 1:
                trainer.callbacks = [*trainer.callbacks, added]

    trainer = _fit(pl, root, [Assigner()])
    names = [type(c).__name__ for c in trainer.callbacks]
    return {"added_calls": calls, "callbacks_after_fit": names}


def callback_inserted_first(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``trainer.callbacks.insert(0, ...)`` in ``on_train_start``: the order hooks run in afterwards."""
    order: list[str] = []

    def named(name: str) -> Any:
        class Named(pl.Callback):
            def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
                order.append(f"{name}.on_train_batch_end")

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                order.append(f"{name}.on_train_epoch_end")

        return Named()

    first = named("first")

    class Inserter(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if first not in trainer.callbacks:  # Lightning's walk reaches this hook again after the insert
                trainer.callbacks.insert(0, first)
                order.append(f"inserted at on_train_start, {len(trainer.callbacks)} callbacks")
            else:
                order.append("Inserter.on_train_start again")

    _fit(pl, root, [named("a"), Inserter(), named("b")], max_epochs=1)
    return {"order": order}


SCENARIOS = {
    "callback_appended_in_on_fit_start": callback_appended_in_on_fit_start,
    "callback_appended_in_batch_hook": callback_appended_in_batch_hook,
    "callback_removed_mid_fit": callback_removed_mid_fit,
    "callbacks_assigned_mid_fit": callbacks_assigned_mid_fit,
    "callback_inserted_first": callback_inserted_first,
}
