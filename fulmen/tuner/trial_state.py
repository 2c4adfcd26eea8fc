"""What a tuner search changes on a running Trainer, and how it puts everything back.

The learning-rate finder and the batch-size scaler run inside ``on_fit_start`` (as Lightning's
do): they take an in-memory checkpoint of the module, optimizers, loop progress, callbacks and
loggers (``CheckpointSnapshot``), swap in their own settings (``TrialSettings``: the callbacks,
the loggers, the step and batch limits), run the Trainer's own fit loop one or more times, and
then restore both, so that the fit that follows starts exactly where it would have without them.
Lightning writes a ``.lr_find_<uuid>.ckpt`` file for the same purpose; a copy in memory holds
the same state without touching the run's folder.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fulmen.loggers.logger import DummyLogger
from fulmen.runtime.checkpoint_state import dump_checkpoint, restore_modules_and_callbacks, restore_training_state

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.callback import Callback
    from fulmen.runtime.trainer import Trainer

_SNAPSHOT_SOURCE = "<the tuner's in-memory checkpoint>"


@dataclass
class CheckpointSnapshot:
    """A deep copy of the checkpoint ``trainer.save_checkpoint`` would write, kept in memory."""

    checkpoint: dict[str, Any]

    @classmethod
    def take(cls, trainer: Trainer) -> CheckpointSnapshot:
        """Copy the current state (tensors are cloned: training goes on with the live ones)."""
        return cls(copy.deepcopy(dump_checkpoint(trainer)))

    def restore(self, trainer: Trainer) -> None:
        """Put weights, optimizer/scheduler states, loop progress, callbacks and loggers back,
        and forget the loaders a trial built (the next run rebuilds them, with the batch size
        the search settled on)."""
        checkpoint = copy.deepcopy(self.checkpoint)
        restore_modules_and_callbacks(trainer, checkpoint, source=_SNAPSHOT_SOURCE)
        restore_training_state(trainer, checkpoint, source=_SNAPSHOT_SOURCE)
        trainer.should_stop = False
        reset_dataloaders(trainer)


def reset_dataloaders(trainer: Trainer) -> None:
    """Drop the loaders built so far: the next loop run asks the module/datamodule again."""
    data = trainer.data_sources
    data.train_dataloader = None
    data.val_loaders = None
    data.val_enabled = None


def use_callbacks(trainer: Trainer, callbacks: list[Callback]) -> None:
    """Make ``callbacks`` the run's callbacks (assigning ``trainer.callbacks`` is what switches the hooks)."""
    trainer.callbacks = callbacks


_LIMITS = ("max_steps", "limit_train_batches", "limit_val_batches")


@dataclass
class TrialSettings:
    """The Trainer settings a search replaces while it runs (Lightning's ``__dump_params``)."""

    callbacks: list[Callback]
    loggers: list[Any]
    limits: dict[str, Any]
    optimizers: list[Any]
    lr_scheduler_configs: list[Any]
    loop_state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def dump(cls, trainer: Trainer) -> TrialSettings:
        """Remember what ``apply`` and the search will change."""
        return cls(
            callbacks=list(trainer.callbacks),
            loggers=list(trainer.loggers),
            limits={name: getattr(trainer.settings, name) for name in _LIMITS},
            optimizers=list(trainer.optimization.optimizers),
            lr_scheduler_configs=list(trainer.optimization.lr_scheduler_configs),
            loop_state=copy.deepcopy(trainer.fit_loop.state_dict()),
        )

    @staticmethod
    def apply(trainer: Trainer, callbacks: list[Callback], **limits: Any) -> None:
        """Run the search with only ``callbacks``, a logger that writes nothing, and ``limits``."""
        use_callbacks(trainer, callbacks)
        trainer.loggers = [DummyLogger()] if trainer.loggers else []
        for name, value in limits.items():
            setattr(trainer.settings, name, value)
        reset_dataloaders(trainer)  # the limits decide the batch counts a loader is loaded with

    def restore(self, trainer: Trainer) -> None:
        """Undo ``apply`` and the search's scheduler and loop progress."""
        use_callbacks(trainer, self.callbacks)
        trainer.loggers = self.loggers
        for name, value in self.limits.items():
            setattr(trainer.settings, name, value)
        trainer.optimization.optimizers = self.optimizers
        trainer.optimization.lr_scheduler_configs = self.lr_scheduler_configs
        trainer.fit_loop.load_state_dict(copy.deepcopy(self.loop_state))
        trainer.should_stop = False

    def run_fit_loop(self, trainer: Trainer) -> None:
        """One trial: the fit loop from the progress it had when the search started."""
        trainer.fit_loop.load_state_dict(copy.deepcopy(self.loop_state))
        trainer.should_stop = False
        with outside_start_hook(trainer):
            trainer.fit_loop.run()


@contextlib.contextmanager
def outside_start_hook(trainer: Trainer) -> Iterator[None]:
    """Run a loop from inside ``on_fit_start`` (or ``on_<stage>_start``) as if no hook were
    running: ``self.log`` in the steps follows the step rules, not the start hook's."""
    hooks = trainer.hook_caller
    previous, hooks.current_fx = hooks.current_fx, None
    try:
        yield
    finally:
        hooks.current_fx = previous
