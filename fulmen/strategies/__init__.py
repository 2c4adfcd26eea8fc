"""Strategies with Lightning's names (``pl.strategies.*``); each loads on first use.

``Trainer(strategy=...)`` takes these instances or their string names ("ddp", "fsdp", ...).
Lightning's ``DeepSpeedStrategy`` and ``ModelParallelStrategy`` are not implemented by fulmen:
asking for them is an error that says what to use instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen._lazy import lazy_getattr

_TABLE = {
    "Strategy": "fulmen.runtime.strategy",
    "ParallelStrategy": "fulmen.runtime.strategy",
    "SingleDeviceStrategy": "fulmen.runtime.strategy",
    "DDPStrategy": "fulmen.runtime.distributed",
    "FSDPStrategy": "fulmen.runtime.fsdp",
}
# Lightning 2.6 names fulmen does not have -> what to use instead
_NOT_IMPLEMENTED = {
    "DeepSpeedStrategy": "FSDPStrategy (strategy='fsdp'), which shards parameters, gradients and optimizer state",
    "ModelParallelStrategy": "FSDPStrategy (strategy='fsdp'), or fully_shard your layers in configure_model",
}
__all__ = list(_TABLE)
_lazy = lazy_getattr(__name__, _TABLE)


def __getattr__(name: str) -> Any:
    if name in _NOT_IMPLEMENTED:
        raise AttributeError(
            f"fulmen.strategies has no {name}: fulmen implements {list(_TABLE)}.\nHINT: use {_NOT_IMPLEMENTED[name]}."
        )
    return _lazy(name)


if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.distributed import DDPStrategy
    from fulmen.runtime.fsdp import FSDPStrategy
    from fulmen.runtime.strategy import ParallelStrategy, SingleDeviceStrategy, Strategy
