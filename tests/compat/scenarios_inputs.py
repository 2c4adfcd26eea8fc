"""Compatibility scenario about input checking: which Trainer flag values are refused when the
Trainer is built, and what fit() does with an empty training loader.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch.utils.data import DataLoader

from tests.compat.models import base_module, dataset, trainer_kwargs

# label -> flags; the label is the flag as a user writes it
FLAG_CASES: dict[str, dict[str, Any]] = {
    "devices=-3": {"devices": -3},
    "devices=0": {"devices": 0},
    "devices=2.5": {"devices": 2.5},
    "devices='abc'": {"devices": "abc"},
    "num_nodes=0": {"num_nodes": 0},
    "max_steps=-2": {"max_steps": -2},
    "max_steps=-1": {"max_steps": -1},
    "max_epochs=-2": {"max_epochs": -2},
    "max_epochs=-1": {"max_epochs": -1},
    "max_epochs=0": {"max_epochs": 0},
    "max_epochs='ten'": {"max_epochs": "ten"},
    "min_epochs=-1": {"min_epochs": -1},
    "min_steps=-5": {"min_steps": -5},
}


def _refused(pl: ModuleType, root: Path, flags: dict[str, Any]) -> bool:
    try:
        pl.Trainer(**trainer_kwargs(str(root), **flags))
    except Exception:  # noqa: BLE001 - refusing is what is observed; the message differs on purpose
        return True
    return False


def flag_validation(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Whether ``Trainer(**flags)`` raises for each case, and an empty loader's fit."""
    refused = {label: _refused(pl, root / "flags", flags) for label, flags in FLAG_CASES.items()}
    hooks: list[str] = []

    class Recording(base_module(pl)):  # type: ignore[misc]
        def on_fit_start(self) -> None:
            hooks.append("on_fit_start")

        def on_train_start(self) -> None:
            hooks.append("on_train_start")

        def on_train_epoch_start(self) -> None:
            hooks.append("on_train_epoch_start")

        def on_train_end(self) -> None:
            hooks.append("on_train_end")

        def on_fit_end(self) -> None:
            hooks.append("on_fit_end")

    trainer = pl.Trainer(**trainer_kwargs(str(root / "empty"), max_epochs=2))
    try:
        trainer.fit(Recording(), DataLoader(dataset(0), batch_size=2))
        raised = False
    except Exception:  # noqa: BLE001 - whether fit survives an empty loader is what is observed
        raised = True
    empty = {"raised": raised, "global_step": trainer.global_step, "current_epoch": trainer.current_epoch,
             "num_training_batches": trainer.num_training_batches, "hooks": hooks}  # fmt: skip
    return {"refused_at_construction": refused, "empty_train_loader": empty}


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {"flag_validation": flag_validation}
