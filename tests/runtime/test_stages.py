"""TrainerFn / RunningStage / TrainerState: the stage enum that names each stage's hooks and loaders."""

from __future__ import annotations

import pytest

import fulmen as pl
from fulmen.runtime.stages import RunningStage, TrainerFn, TrainerState, TrainerStatus
from tests.core.models import TRAINER_QUIET, BoringModel


def test_enums_compare_equal_to_lightnings_strings() -> None:
    assert [fn.value for fn in TrainerFn] == ["fit", "validate", "test", "predict"]
    assert [stage.value for stage in RunningStage] == ["train", "sanity_check", "validate", "test", "predict"]
    assert TrainerFn.FITTING == "fit" and f"{TrainerFn.TESTING}" == "test"  # user code compares with strings


@pytest.mark.parametrize(
    ("stage", "loader_hook", "step", "limit_prefix"),
    [
        (RunningStage.TRAINING, "train_dataloader", "training_step", "train"),
        (RunningStage.SANITY_CHECKING, "val_dataloader", "validation_step", "val"),
        (RunningStage.VALIDATING, "val_dataloader", "validation_step", "val"),
        (RunningStage.TESTING, "test_dataloader", "test_step", "test"),
        (RunningStage.PREDICTING, "predict_dataloader", "predict_step", "predict"),
    ],
)
def test_each_stage_names_its_dataloader_hook_and_step(stage, loader_hook, step, limit_prefix) -> None:
    assert (stage.dataloader_hook, stage.step_name, stage.dataloader_prefix) == (loader_hook, step, limit_prefix)


def test_entry_points_run_their_stage() -> None:
    assert {fn: fn.stage for fn in TrainerFn} == {
        TrainerFn.FITTING: RunningStage.TRAINING,
        TrainerFn.VALIDATING: RunningStage.VALIDATING,
        TrainerFn.TESTING: RunningStage.TESTING,
        TrainerFn.PREDICTING: RunningStage.PREDICTING,
    }


def test_state_start_and_end_keep_one_object() -> None:
    state = TrainerState()
    state.start(TrainerFn.TESTING)
    state.stage = RunningStage.TESTING
    assert (state.status, state.fn, state.stage) == (TrainerStatus.RUNNING, TrainerFn.TESTING, RunningStage.TESTING)
    state.end(TrainerStatus.FINISHED)
    assert state.finished and state.stopped and state.stage is None and state.fn is TrainerFn.TESTING


class StageRecorder(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[object, object]] = []

    def _record(self, trainer) -> None:
        self.seen.append((trainer.state.fn, trainer.state.stage))

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._record(trainer)


def test_hooks_see_the_entry_point_and_the_running_stage_as_enums() -> None:
    recorder = StageRecorder()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, limit_test_batches=1,
                         num_sanity_val_steps=1, callbacks=[recorder], **TRAINER_QUIET)  # fmt: skip
    model = BoringModel()
    trainer.fit(model)
    trainer.test(model, verbose=False)
    assert recorder.seen == [
        (TrainerFn.FITTING, RunningStage.SANITY_CHECKING),
        (TrainerFn.FITTING, RunningStage.SANITY_CHECKING),  # the sanity check's validation epoch
        (TrainerFn.FITTING, RunningStage.TRAINING),
        (TrainerFn.FITTING, RunningStage.VALIDATING),
        (TrainerFn.TESTING, RunningStage.TESTING),
    ]
    assert all(isinstance(fn, TrainerFn) and isinstance(stage, RunningStage) for fn, stage in recorder.seen)
    assert trainer.state.status is TrainerStatus.FINISHED and trainer.state.stage is None
