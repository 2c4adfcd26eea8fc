"""How far training has come: the counters the fit loop advances and others read.

Kept as one small object so that the parts that read the counters (metric publication: the
logger step and epoch; the optimization step: which optimizer stepped) do not need the loop,
and the one part that counts optimizer steps does so through a method, never by writing
another object's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainingProgress:
    """Epoch, steps and the stop request of one Trainer (saved with the fit loop's state)."""

    current_epoch: int = 0
    global_step: int = 0  # optimizer steps (all optimizers: Lightning's count)
    batch_idx: int = 0  # batches finished in the current epoch
    total_batch_idx: int = 0
    batches_that_stepped: int = 0  # the step loggers see
    optimizer_steps: list[int] = field(default_factory=list)
    is_last_batch: bool = False  # the running (or last run) training batch is its epoch's last (trainer.is_last_batch)
    should_stop: bool = False  # set by callbacks (EarlyStopping) through ``trainer.should_stop``

    def count_optimizer_step(self, optimizer_index: int | None) -> None:
        """One optimizer step taken (``None``: a step without an optimizer, which Lightning counts)."""
        if optimizer_index is not None and optimizer_index < len(self.optimizer_steps):
            self.optimizer_steps[optimizer_index] += 1
        self.global_step += 1
