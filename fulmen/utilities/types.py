"""Lightning's type aliases (``pytorch_lightning.utilities.types``) for annotating user code.

Scripts annotate their hooks with these (``def training_step(...) -> STEP_OUTPUT``,
``def configure_optimizers(self) -> OptimizerLRScheduler``), so the import must work under
``import fulmen as pl``. They are annotations only: nothing in fulmen checks values against them.

Not here: ``LRSchedulerConfig`` (fulmen's dataclass with Lightning's fields is
``fulmen.runtime.optim.LRSchedulerConfig``, a layer above this one) and Lightning's internal
``DistributedDataParallel`` protocol (annotate with torch's class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from typing_extensions import NotRequired, Required

STEP_OUTPUT = Tensor | Mapping[str, Any] | None
TRAIN_DATALOADERS = Any  # any iterable or collection of iterables
EVAL_DATALOADERS = Any

LRSchedulerTypeTuple = (LRScheduler, ReduceLROnPlateau)  # for isinstance checks
LRSchedulerTypeUnion = LRScheduler | ReduceLROnPlateau
LRSchedulerType = type[LRScheduler] | type[ReduceLROnPlateau]
LRSchedulerPLType = LRScheduler | ReduceLROnPlateau


class LRSchedulerConfigType(TypedDict, total=False):
    """The ``"lr_scheduler"`` dict ``configure_optimizers`` may return."""

    scheduler: Required[LRSchedulerTypeUnion]
    name: str | None
    interval: str
    frequency: int
    reduce_on_plateau: bool
    monitor: str | None
    strict: bool


class OptimizerConfig(TypedDict):
    """``{"optimizer": ...}`` returned by ``configure_optimizers``."""

    optimizer: Optimizer


class OptimizerLRSchedulerConfig(TypedDict):
    """``{"optimizer": ..., "lr_scheduler": ..., "monitor": ...}`` returned by ``configure_optimizers``."""

    optimizer: Optimizer
    lr_scheduler: LRSchedulerTypeUnion | LRSchedulerConfigType
    monitor: NotRequired[str]


OptimizerLRScheduler = (
    Optimizer
    | Sequence[Optimizer]
    | tuple[Sequence[Optimizer], Sequence[LRSchedulerTypeUnion | LRSchedulerConfigType]]
    | OptimizerConfig
    | OptimizerLRSchedulerConfig
    | Sequence[OptimizerConfig]
    | Sequence[OptimizerLRSchedulerConfig]
    | None
)
"""Everything ``configure_optimizers`` may return (Lightning's spelling)."""
