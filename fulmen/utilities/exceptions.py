"""Lightning's exception import path (``pytorch_lightning.utilities.exceptions``)."""

from __future__ import annotations

from fulmen.errors import MisconfigurationException

__all__ = ["MisconfigurationException"]
