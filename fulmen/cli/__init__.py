"""``pl.cli``: LightningCLI on jsonargparse (the optional extra ``fulmen[cli]``); each name loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen._lazy import lazy_getattr

_TABLE = {
    "LightningCLI": "fulmen.cli.lightning_cli",
    "SaveConfigCallback": "fulmen.cli.save_config",
    "LightningArgumentParser": "fulmen.cli.parser",
    "ReduceLROnPlateau": "fulmen.cli.parser",
    "instantiate_class": "fulmen.cli.parser",
    "instantiate_module": "fulmen.cli.instantiation",
    "ArgsType": "fulmen.cli.parser",
    "OptimizerCallable": "fulmen.cli.parser",
    "LRSchedulerCallable": "fulmen.cli.parser",
    "LRSchedulerType": "fulmen.cli.parser",
    "LRSchedulerTypeTuple": "fulmen.cli.parser",
    "LRSchedulerTypeUnion": "fulmen.cli.parser",
}
__all__ = list(_TABLE)
__getattr__ = lazy_getattr(__name__, _TABLE)

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.cli.instantiation import instantiate_module
    from fulmen.cli.lightning_cli import LightningCLI
    from fulmen.cli.parser import (
        ArgsType,
        LightningArgumentParser,
        LRSchedulerCallable,
        LRSchedulerType,
        LRSchedulerTypeTuple,
        LRSchedulerTypeUnion,
        OptimizerCallable,
        ReduceLROnPlateau,
        instantiate_class,
    )
    from fulmen.cli.save_config import SaveConfigCallback
