"""What the Trainer is doing, as Lightning names it: ``trainer.state.fn`` / ``.stage`` / ``.status``.

String enums, so user code that compares with plain strings (``trainer.state.fn == "fit"``)
keeps working, as it does with Lightning's. Each stage also knows the names that go with it
(its dataloader hook, its step method, its hook prefix), so the loops ask the stage instead of
looking names up in tables keyed by strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TrainerFn(StrEnum):
    """The entry point that is running (Lightning's ``TrainerFn``)."""

    FITTING = "fit"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def stage(self) -> RunningStage:
        """The stage this entry point runs its loop in (fit: training)."""
        return RunningStage.TRAINING if self is TrainerFn.FITTING else RunningStage(self.value)


class RunningStage(StrEnum):
    """The loop that is running (Lightning's ``RunningStage``)."""

    TRAINING = "train"
    SANITY_CHECKING = "sanity_check"
    VALIDATING = "validate"
    TESTING = "test"
    PREDICTING = "predict"

    @property
    def dataloader_prefix(self) -> str:
        """``train`` / ``val`` / ``test`` / ``predict``: as in ``val_dataloader``, ``limit_val_batches``."""
        return _DATALOADER_PREFIX[self]

    @property
    def hook_prefix(self) -> str:
        """``training`` / ``validation`` / ``test`` / ``predict``: as in ``validation_step``, ``on_test_start``."""
        return _HOOK_PREFIX[self]

    @property
    def dataloader_hook(self) -> str:
        """The ``*_dataloader`` method that supplies this stage's data."""
        return f"{self.dataloader_prefix}_dataloader"

    @property
    def step_name(self) -> str:
        """The LightningModule method run on each batch."""
        return f"{self.hook_prefix}_step"


_DATALOADER_PREFIX = {
    RunningStage.TRAINING: "train",
    RunningStage.SANITY_CHECKING: "val",
    RunningStage.VALIDATING: "val",
    RunningStage.TESTING: "test",
    RunningStage.PREDICTING: "predict",
}
_HOOK_PREFIX = {
    RunningStage.TRAINING: "training",
    RunningStage.SANITY_CHECKING: "validation",
    RunningStage.VALIDATING: "validation",
    RunningStage.TESTING: "test",
    RunningStage.PREDICTING: "predict",
}


class TrainerStatus(StrEnum):
    """Where a run is (Lightning's ``TrainerStatus``)."""

    INITIALIZING = "initializing"
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


@dataclass
class TrainerState:
    """``trainer.state``: the entry point (``fn``), the loop running (``stage``) and the ``status``."""

    status: TrainerStatus = TrainerStatus.INITIALIZING
    fn: TrainerFn | None = None
    stage: RunningStage | None = None

    def start(self, fn: TrainerFn) -> None:
        """A run of ``fn`` begins (one state object per Trainer: the loops hold it)."""
        self.status, self.fn, self.stage = TrainerStatus.RUNNING, fn, None

    def end(self, status: TrainerStatus) -> None:
        """The run ended with ``status`` (finished or interrupted); no loop is running."""
        self.status, self.stage = status, None

    @property
    def finished(self) -> bool:
        return self.status == TrainerStatus.FINISHED

    @property
    def stopped(self) -> bool:
        return self.status in (TrainerStatus.FINISHED, TrainerStatus.INTERRUPTED)
