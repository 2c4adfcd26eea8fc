"""Lightning's tuner (``pl.tuner.Tuner``): the learning-rate finder and the batch-size scaler."""

from __future__ import annotations

from fulmen.tuner.tuning import Tuner

__all__ = ["Tuner"]
