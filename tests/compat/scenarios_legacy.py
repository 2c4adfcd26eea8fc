"""Compatibility scenarios for Lightning 1.x spellings that a 2.x callback still expresses.

``Trainer(accumulate_grad_batches={epoch: factor})`` of Lightning 1.9.5 was built on
``GradientAccumulationScheduler``, which 2.x keeps: the scenario records the callback under
Lightning 2.6 and ``tests/runtime/test_legacy_accumulation.py`` checks that fulmen's dict flag
gives the same observations. Same contract as ``scenarios.py``: ``fn(pl, root) -> dict``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader

from tests.compat.models import base_module, dataset, trainer_kwargs
from tests.compat.normalise import plain

ACCUMULATION_SCHEDULE = {1: 2, 2: 4}  # epoch 0: every batch; 1: every 2nd; 2: every 4th (and the last)


def accumulation_run(pl: ModuleType, root: Path, *, as_flag: bool) -> dict[str, Any]:
    """3 epochs x 6 batches under ``ACCUMULATION_SCHEDULE``, as the callback or (1.x) the Trainer flag."""
    rows: list[list[int]] = []
    losses: list[float] = []

    class Scheduled(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            losses.append(loss.item())
            return loss

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            trainer = self.trainer
            rows.append([trainer.current_epoch, batch_idx, trainer.accumulate_grad_batches, trainer.global_step])

    model = Scheduled()
    schedule = dict(ACCUMULATION_SCHEDULE)
    if as_flag:
        flags = trainer_kwargs(str(root), max_epochs=3, limit_val_batches=0, accumulate_grad_batches=schedule)
    else:
        callback = pl.callbacks.GradientAccumulationScheduler(schedule)
        flags = trainer_kwargs(str(root), max_epochs=3, limit_val_batches=0, callbacks=[callback])
    pl.Trainer(**flags).fit(model, DataLoader(dataset(12), batch_size=2))
    return {
        "epoch_batch_factor_global_step": rows,
        "losses": plain(losses),
        "final_weights": {name: plain(tensor.detach().double()) for name, tensor in sorted(model.state_dict().items())},
    }


def accumulation_schedule(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The factor in force per batch, global_step after each batch, losses and final weights."""
    return accumulation_run(pl, root, as_flag=False)


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "accumulation_schedule": accumulation_schedule,
}
