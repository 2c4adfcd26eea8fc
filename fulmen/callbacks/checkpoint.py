"""``Checkpoint``: the base class of callbacks that save checkpoints (Lightning's ``pl.callbacks.Checkpoint``).

The Trainer treats every ``Checkpoint`` alike: with one in ``callbacks`` it adds no default
``ModelCheckpoint``, ``enable_checkpointing=False`` is a contradiction, and it runs last.
"""

from __future__ import annotations

from fulmen.core.callback import Callback

__all__ = ["Checkpoint"]


class Checkpoint(Callback):
    """Base class for checkpointing callbacks (``ModelCheckpoint``, ``OnExceptionCheckpoint``)."""
