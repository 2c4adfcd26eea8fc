"""The batch-size search (Lightning's ``pytorch_lightning.tuner.batch_size_scaling``).

``_scale_batch_size`` runs at the start of a fit (or validate/test/predict): from ``init_val``
it runs ``steps_per_trial`` batches per trial with the module's (or datamodule's) batch size,
doubling it after each trial that fits in memory. ``power`` stops at the first out-of-memory
error and keeps the last size that ran; ``binsearch`` then bisects between the last success and
the failure and takes ``margin`` off the result. A size as large as the dataset, ``max_val`` or
``max_trials`` trials end the search too. Weights, optimizer, loop progress, callbacks and
loggers are restored afterwards; the size found stays on the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.runtime.stages import RunningStage, TrainerFn
from fulmen.tuner.trial_state import CheckpointSnapshot, TrialSettings, outside_start_hook, reset_dataloaders
from fulmen.utilities.memory import garbage_collection_cuda, is_oom_error
from fulmen.utilities.parsing import lightning_getattr, lightning_setattr
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


SUPPORTED_MODES = ("power", "binsearch")


def _scale_batch_size(
    trainer: Trainer,
    mode: str = "power",
    steps_per_trial: int = 3,
    init_val: int = 2,
    max_trials: int = 25,
    batch_arg_name: str = "batch_size",
    margin: float = 0.05,
    max_val: int = 8192,
) -> int | None:
    """Search the batch size on ``trainer``'s running stage and restore its state; see the module docstring."""
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"`margin` should be between 0 and 1. Found margin={margin}")
    if mode not in SUPPORTED_MODES:
        raise ValueError(f"`mode` should be either of {SUPPORTED_MODES}, got {mode!r}.")
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping batch size scaler since `fast_dev_run` is enabled.")
        return None
    snapshot = CheckpointSnapshot.take(trainer)
    trial = _Trial(trainer, steps_per_trial)
    try:
        new_size, _ = _adjust_batch_size(trainer, batch_arg_name, value=init_val)
        if mode == "power":
            new_size = _run_power_scaling(trial, new_size, batch_arg_name, max_trials, max_val)
        else:
            new_size = _run_binsearch_scaling(trial, new_size, batch_arg_name, max_trials, margin, max_val)
        garbage_collection_cuda()
        rank_zero_info(f"Finished batch size finder, will continue with full run using batch size {new_size}")
    finally:
        trial.restore()
        snapshot.restore(trainer)
    return new_size


class _Trial:
    """One stage (fit, or an evaluation stage) set up to run ``steps_per_trial`` batches per trial."""

    def __init__(self, trainer: Trainer, steps_per_trial: int) -> None:
        self.trainer = trainer
        self.fitting = trainer.state.fn is TrainerFn.FITTING
        self.settings = TrialSettings.dump(trainer)
        self.stage = trainer.state.stage
        if self.fitting:
            TrialSettings.apply(trainer, [], limit_train_batches=1.0, limit_val_batches=steps_per_trial,
                                max_steps=steps_per_trial)  # fmt: skip
        else:
            self.limit_name = f"limit_{trainer.state.fn.stage.dataloader_prefix}_batches"
            self.limit = getattr(trainer.settings, self.limit_name)
            TrialSettings.apply(trainer, [], **{self.limit_name: steps_per_trial})

    def run(self) -> None:
        """Run the stage once from where the search started (an OOM propagates to the caller)."""
        trainer = self.trainer
        if self.fitting:
            self.settings.run_fit_loop(trainer)
            return
        stage = trainer.state.fn.stage
        loaders, nums = trainer.data_sources.eval_loaders(stage)
        with outside_start_hook(trainer):
            if stage is RunningStage.PREDICTING:
                trainer.evaluation_loop.predict(loaders, nums, False)
            else:
                trainer.evaluation_loop.run(stage, loaders, nums, in_fit=False)
        trainer.state.stage = self.stage

    def restore(self) -> None:
        """The Trainer's settings, callbacks and loggers as they were before the search."""
        self.settings.restore(self.trainer)
        if not self.fitting:
            setattr(self.trainer.settings, self.limit_name, self.limit)
        self.trainer.state.stage = self.stage


def _run_power_scaling(trial: _Trial, new_size: int, batch_arg_name: str, max_trials: int, max_val: int) -> int:
    """Double the batch size after every trial that runs, until one runs out of memory."""
    trainer = trial.trainer
    any_success = False
    last_successful_size = new_size
    for i in range(max_trials):
        garbage_collection_cuda()
        if new_size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        try:
            trial.run()
            last_successful_size = new_size
            if i + 1 >= max_trials:
                new_size = last_successful_size
                break
            new_size, changed = _adjust_batch_size(trainer, batch_arg_name, factor=2.0, desc="succeeded")
            if not changed:
                break
            any_success = True
        except RuntimeError as exception:
            if not is_oom_error(exception):
                raise  # only running out of memory is a result of the search
            garbage_collection_cuda()
            new_size, _ = _adjust_batch_size(trainer, batch_arg_name, factor=0.5, desc="failed")
            if any_success:
                break
    return new_size


def _run_binsearch_scaling(trial: _Trial, new_size: int, batch_arg_name: str, max_trials: int, margin: float,
                           max_val: int) -> int:  # fmt: skip
    """Double until an OOM, then bisect between the last size that ran and the one that did not."""
    trainer = trial.trainer
    low, high, count = 1, None, 0
    last_successful_size = new_size
    while True:
        garbage_collection_cuda()
        if new_size >= max_val:
            rank_zero_info(f"Reached the maximum batch size limit of {max_val}. Stopping search.")
            break
        try:
            trial.run()
            last_successful_size = new_size
            count += 1
            if count >= max_trials:
                new_size = last_successful_size
                break
            low = new_size
            if high:
                if high - low <= 1:
                    break
                value, factor = (high + low) // 2, 1.0
            else:
                value, factor = None, 2.0
            new_size, changed = _adjust_batch_size(trainer, batch_arg_name, factor, value, "succeeded", max_val)
            if not changed:
                break
        except RuntimeError as exception:
            if not is_oom_error(exception):
                raise
            garbage_collection_cuda()
            high = new_size
            new_size, _ = _adjust_batch_size(trainer, batch_arg_name, value=(high + low) // 2, desc="failed")
            if high - low <= 1:
                break
    if margin > 0:
        reduced = max(1, int(new_size * (1 - margin)))
        if reduced != new_size:
            rank_zero_info(f"Applying margin of {margin:.1%}, reducing batch size from {new_size} to {reduced}")
            new_size = reduced
            lightning_setattr(trainer.lightning_module, batch_arg_name, new_size)
    return new_size


def _adjust_batch_size(
    trainer: Trainer,
    batch_arg_name: str = "batch_size",
    factor: float = 1.0,
    value: int | None = None,
    desc: str | None = None,
    max_val: int = 8192,
) -> tuple[int, bool]:
    """Set the next batch size (``value``, else the current one times ``factor``, at most
    ``max_val``); returns it and whether it changed. A size already as large as the dataset
    stays: a larger one would run the same batches."""
    model = trainer.lightning_module
    batch_size = lightning_getattr(model, batch_arg_name)
    dataset_length = _dataset_length(trainer)
    if dataset_length is not None and batch_size >= dataset_length:
        rank_zero_info(f"The batch size {batch_size} is greater or equal than the length of your dataset: {dataset_length}.")
        return batch_size, False
    new_size = value if value is not None else int(batch_size * factor)
    if new_size > max_val:
        if desc:
            rank_zero_info(f"Batch size {new_size} exceeds max_val limit {max_val}, capping at {max_val}")
        new_size = max_val
    if desc:
        rank_zero_info(f"Batch size {batch_size} {desc}, trying batch size {new_size}")
    lightning_setattr(model, batch_arg_name, new_size)
    reset_dataloaders(trainer)  # the next trial asks the module/datamodule for loaders of the new size
    return new_size, new_size != batch_size


def _dataset_length(trainer: Trainer) -> int | None:
    """The summed dataset length of the running stage's loaders (None when one has no length)."""
    data = trainer.data_sources
    if trainer.state.fn is TrainerFn.FITTING:
        data.load_train_dataloader(reload=True)
        loaders: list[Any] = _flatten(data.train_dataloader)
    else:
        loaders, _ = data.eval_loaders(trainer.state.fn.stage)
    try:
        return sum(len(loader.dataset) for loader in loaders)
    except (TypeError, AttributeError):
        return None


def _flatten(loader: Any) -> list[Any]:
    """The DataLoaders behind a (possibly combined) training loader."""
    inner = getattr(loader, "loaders", None)
    if inner is None:
        return [loader]
    return list(inner.values()) if isinstance(inner, dict) else list(inner)
