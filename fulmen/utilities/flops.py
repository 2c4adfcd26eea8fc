"""FLOP counting for the model summary, without the one-off ``torch._dynamo`` import.

``torch.utils.flop_counter.FlopCounterMode`` counts FLOPs per module, but its dispatch handler
is wrapped in a "disable dynamo" decorator that imports ``torch._dynamo`` (1-2 s) on first
use, only to protect code running under ``torch.compile``. The summary runs its forward
eagerly, so it uses the same counter with an unwrapped handler, opting out the way
``TorchDispatchMode._should_skip_dynamo`` documents. If a torch version changes these
internals, it falls back to the public counter (correct, just slower the first time).
"""

from __future__ import annotations

from typing import Any

from torch.utils.flop_counter import FlopCounterMode

__all__ = ["flop_counter"]


def _eager_counter_class() -> type[FlopCounterMode] | None:
    try:
        from torch.utils import flop_counter as torch_flop_counter

        mode_class = torch_flop_counter._FlopCounterMode
        handler = mode_class.__dict__["__torch_dispatch__"]
        handler = getattr(handler, "__wrapped__", handler)
    except (AttributeError, KeyError):  # pragma: no cover - depends on the torch version
        return None

    class _EagerFlopCounterMode(mode_class):  # type: ignore[misc, valid-type]
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False

        __torch_dispatch__ = handler

    class _EagerFlopCounter(FlopCounterMode):
        def __enter__(self) -> Any:
            super().__enter__()
            # Swap the mode the public counter just pushed for the unwrapped one.
            self.mode.__exit__(None, None, None)
            self.mode = _EagerFlopCounterMode(self)
            self.mode.__enter__()
            return self

    return _EagerFlopCounter


_EAGER_COUNTER = _eager_counter_class()


def flop_counter(depth: int) -> FlopCounterMode:
    """A ``FlopCounterMode(display=False, depth=depth)`` for an eager (not compiled) forward pass."""
    cls = _EAGER_COUNTER or FlopCounterMode
    return cls(display=False, depth=depth)
