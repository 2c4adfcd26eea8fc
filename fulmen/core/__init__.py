"""What users subclass: ``LightningModule``, ``LightningDataModule`` (Lightning's ``pl.core`` path)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen._lazy import lazy_getattr

_TABLE = {
    "LightningModule": "fulmen.core.module",
    "LightningDataModule": "fulmen.core.datamodule",
}
__all__ = list(_TABLE)
__getattr__ = lazy_getattr(__name__, _TABLE)

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.core.module import LightningModule
