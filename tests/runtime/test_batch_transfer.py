"""BatchTransfer: whether a run's batches need transferring at all is decided once per run."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import fulmen as pl
from tests.core.models import TRAINER_QUIET, BoringModel


class WithTransferHook(BoringModel):
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch * 2


@pytest.mark.parametrize(
    "model, precision, changes",
    [(BoringModel, "32-true", False), (WithTransferHook, "32-true", True), (BoringModel, "64-true", True)],
    ids=["cpu-plain", "transfer-hook", "float64-input"],
)
def test_changes_batches_only_with_a_device_hooks_or_an_input_dtype(model: type, precision: str, changes: bool) -> None:
    trainer = pl.Trainer(accelerator="cpu", precision=precision, **TRAINER_QUIET)
    module = model()
    trainer.hook_caller.attach(module)
    trainer.batch_transfer.attach(trainer.hook_caller, None)
    assert trainer.batch_transfer.changes_batches() is changes
    batch = torch.ones(2, 32)
    moved = trainer.batch_transfer(batch, 0)
    assert (moved is batch) is not changes  # when it changes nothing the batch is returned as it is
