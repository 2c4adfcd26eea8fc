"""fulmen: Lightning-compatible training, from one CPU to a preemptible SLURM allocation.

``import fulmen as pl`` offers the PyTorch Lightning 2.x API. Importing the package does no
work and installs nothing (no signal handlers, no logging config): every public name is
loaded on first access, so ``import fulmen`` costs about what ``import torch`` costs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "LightningModule": "fulmen.core.module",
    "LightningDataModule": "fulmen.core.datamodule",
    "Callback": "fulmen.core.callback",
    "Trainer": "fulmen.runtime.trainer",
    "seed_everything": "fulmen.utilities.seed",
}
_LAZY_SUBMODULES = (
    "callbacks", "loggers", "utilities", "launcher", "slurm", "core", "runtime", "errors", "cli", "tuner", "strategies",
)

__all__ = [*_LAZY_ATTRIBUTES, *_LAZY_SUBMODULES, "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from fulmen import callbacks, loggers, utilities
    from fulmen.core.callback import Callback
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer
    from fulmen.utilities.seed import seed_everything


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRIBUTES:
        value = getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    elif name in _LAZY_SUBMODULES:
        value = importlib.import_module(f"fulmen.{name}")
    else:
        raise AttributeError(f"module 'fulmen' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
