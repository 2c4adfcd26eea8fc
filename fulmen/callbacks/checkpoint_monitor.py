"""The metrics a ModelCheckpoint save sees, the score it ranks by, and a monitor never logged.

``callback_metrics`` is both the source of the file name (``{epoch}``, ``{val_loss:.2f}``) and
of the monitored score, so both are read through ``monitor_candidates``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


def monitor_candidates(trainer: Trainer) -> dict[str, Any]:
    """``trainer.callback_metrics`` with integer ``epoch`` and ``step`` (logged ones, else the trainer's)."""
    candidates = dict(trainer.callback_metrics)
    # self.log("epoch", 3) arrives as a float tensor: names want integers
    epoch = candidates.get("epoch")
    candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
    step = candidates.get("step")
    candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
    return candidates


def monitored_score(candidates: dict[str, Any], monitor: str) -> Tensor | None:
    """The value of ``monitor`` as a tensor (a logged Python number too), None if it is missing."""
    current = candidates.get(monitor)
    if current is not None and not isinstance(current, Tensor):
        current = torch.tensor(float(current))
    return current


def check_monitor_logged(monitor: str, candidates: dict[str, Any], validation_ran: bool) -> None:
    """Warn, or raise once a validation has run, when ``monitor`` is not among the logged metrics.

    Until a validation has run, a validation metric cannot be there yet (a save at a train
    epoch end before the first validation), so that only warns; after one, the metric is not
    logged under that name. Either way no top-k file is saved for these metrics.
    """
    if monitor in candidates:
        return
    message = (
        f"`ModelCheckpoint(monitor={monitor!r})` could not find the monitored key in the returned "
        f"metrics: {sorted(k for k in candidates if k not in ('epoch', 'step'))}.\n"
        f"HINT: Did you call `log({monitor!r}, value)` in the `LightningModule`?"
    )
    if validation_ran:
        raise MisconfigurationException(message)
    rank_zero_warn(message)
