"""Old APIs the seeds' scripts use, for users who do not want the original packages:
``fulmen.compat.Experiment`` is test_tube's ``Experiment`` (tensorboard loads on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen._lazy import lazy_getattr

_TABLE = {"Experiment": "fulmen.compat.experiment"}
__all__ = list(_TABLE)
__getattr__ = lazy_getattr(__name__, _TABLE)

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.compat.experiment import Experiment
