"""The fit loop: epochs of training batches, optimizer steps, schedulers, validation checks.

Readable top to bottom: ``run`` -> ``_run_epoch`` -> ``_run_batch`` -> automatic or manual
optimization. The loop works with the Trainer's collaborators, never the Trainer itself: the
``HookCaller`` (hooks nobody overrides are skipped rather than called), the ``MetricPublisher``,
the ``OptimizationStep``, the ``DataSources``, the ``CheckpointFlow`` (the preemption stop),
and a ``validate`` callable for validation inside fit. Progress (epoch, batch in epoch, global
step, optimizer steps, data position) is in ``state_dict()`` for checkpoints and exact resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from torch import Tensor

from fulmen.runtime import run_events
from fulmen.runtime.batch_transfer import BatchTransfer
from fulmen.runtime.checkpoint_flow import CheckpointFlow
from fulmen.runtime.data_sources import DataSources
from fulmen.runtime.fetcher import DataFetcher
from fulmen.runtime.hook_caller import HookCaller
from fulmen.runtime.legacy_optimization import LegacyOutputs
from fulmen.runtime.legacy_tbptt_manual import batch_routines
from fulmen.runtime.loop_settings import LoopSettings
from fulmen.runtime.metric_publisher import MetricPublisher
from fulmen.runtime.optimization_step import OptimizationStep
from fulmen.runtime.stages import RunningStage
from fulmen.runtime.strategy import Strategy
from fulmen.runtime.training_progress import TrainingProgress
from fulmen.utilities.rank_zero import rank_zero_info


def _batch_outputs(output: Any, loss: Tensor | None, automatic: bool, normalize: int) -> Any:
    """What on_train_batch_end receives as ``outputs`` (Lightning: {"loss": detached, **extra})."""
    if automatic:
        if type(output) is LegacyOutputs:  # 1.x several optimizers / tbptt: already in 1.9.5's shape
            return output.value
        if loss is None:
            return {}
        extra = {k: v for k, v in output.items() if k != "loss"} if isinstance(output, dict) else {}
        return {"loss": (loss / normalize if normalize > 1 else loss).detach(), **extra}
    if output is None:
        return {}
    if isinstance(output, Tensor):
        return {"loss": output.detach()}
    if isinstance(output, dict):
        return {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in output.items()}
    return output


class _ProgressField:
    """``fit_loop.<name>`` reads and writes ``fit_loop.progress.<name>`` (Lightning's attribute names)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, loop: FitLoop | None, owner: type) -> Any:
        return self if loop is None else getattr(loop.progress, self.name)

    def __set__(self, loop: FitLoop, value: Any) -> None:
        setattr(loop.progress, self.name, value)


class FitLoop:
    """Training progress and the loop that advances it."""

    current_epoch = _ProgressField()
    global_step = _ProgressField()
    batch_idx = _ProgressField()
    total_batch_idx = _ProgressField()
    batches_that_stepped = _ProgressField()
    optimizer_steps = _ProgressField()

    def __init__(self, settings: LoopSettings, progress: TrainingProgress, hooks: HookCaller,
                 metrics: MetricPublisher, optimization: OptimizationStep, data: DataSources,
                 transfer: BatchTransfer, checkpoints: CheckpointFlow, strategy: Strategy,
                 validate: Callable[[], Any]) -> None:  # fmt: skip
        self.settings = settings
        self.progress = progress
        self.hooks = hooks
        self.metrics = metrics
        self.optimization = optimization
        self.data = data
        self.transfer = transfer
        self.checkpoints = checkpoints
        self.strategy = strategy
        self.validate = validate  # validation inside fit (the Trainer switches its stage around it)
        self.fetcher = DataFetcher()
        self._restored_mid_epoch = False
        self.epoch_processed = False  # True while the epoch-end hooks of current_epoch run
        self.batch_end_running = False  # True while the on_train_batch_end hooks run
        self._start_time: float | None = None
        self._epoch_outputs: list[Any] = []
        self._collect_outputs = False  # a legacy training_epoch_end wants every batch's outputs
        # decided once per run (FitLoop.run), for the per-batch guards
        self._several_ranks = False  # the preemption stop is then a collective at every step
        self._transfers = True  # the batch transfer changes batches (a device, hooks, an input dtype)
        self.report = run_events.ProgressReport(None, dict)  # rank 0's progress.json, set up by run()
        self._automatic_step: Callable[..., tuple[Any, Tensor | None]] = optimization.automatic_step
        self._manual_step: Callable[..., tuple[Any, None]] = optimization.manual_step

    # ---- checkpoint accessors ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Progress for checkpoints: epoch, batch_idx (finished in epoch), steps, data position."""
        p = self.progress
        return {
            "epoch": p.current_epoch,
            "batch_idx": p.batch_idx,
            "total_batch_idx": p.total_batch_idx,
            "global_step": p.global_step,
            "batches_that_stepped": p.batches_that_stepped,
            "epoch_processed": self.epoch_processed,
            "batch_end_running": self.batch_end_running,
            "optimizer_steps": list(p.optimizer_steps),
            "data": self.fetcher.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: mid-epoch states resume at the next batch of that epoch."""
        p = self.progress
        p.current_epoch = int(state.get("epoch", 0))
        p.batch_idx = int(state.get("batch_idx", 0))
        p.total_batch_idx = int(state.get("total_batch_idx", 0))
        p.global_step = int(state.get("global_step", 0))
        p.batches_that_stepped = int(state.get("batches_that_stepped", p.global_step))
        p.optimizer_steps = list(state.get("optimizer_steps", []))
        data = state.get("data")
        if state.get("epoch_processed"):
            # saved while the epoch-end hooks ran: that epoch is over, the next one starts fresh
            p.current_epoch += 1
            p.batch_idx = 0
            if data is not None:
                self.fetcher.load_state_dict({"rng_at_save": data.get("rng_at_save")})
        elif data is not None:
            self.fetcher.load_state_dict(data)
        self._restored_mid_epoch = p.batch_idx > 0

    @property
    def restarted_mid_epoch(self) -> bool:
        """True from a mid-epoch restore until that epoch continues; its ``on_train_epoch_start``
        does not run again (Lightning), so the progress bar sets itself up in ``on_train_start``."""
        return self._restored_mid_epoch

    # ---- stopping ------------------------------------------------------------------
    @property
    def max_steps_reached(self) -> bool:
        max_steps = self.settings.max_steps
        return max_steps is not None and max_steps >= 0 and self.progress.global_step >= max_steps

    @property
    def can_stop_early(self) -> bool:
        """min_epochs / min_steps are met, so should_stop may end training."""
        s, p = self.settings, self.progress
        return (s.min_epochs is None or p.current_epoch >= s.min_epochs) and (s.min_steps is None or p.global_step >= s.min_steps)

    @property
    def done(self) -> bool:
        """Whether training is over; a limit reached is said as Lightning says it (an early stop is not)."""
        s, epoch = self.settings, self.progress.current_epoch
        limit = "max_steps" if self.max_steps_reached else None
        if limit := limit or ("max_epochs" if s.max_epochs is not None and 0 <= s.max_epochs <= epoch else None):
            rank_zero_info(f"`Trainer.fit` stopped: `{limit}={getattr(s, limit)!r}` reached.")
            return True
        return self.progress.should_stop and self.can_stop_early

    def _check_max_time(self) -> None:
        max_time = self.settings.max_time
        if max_time is not None and self._start_time is not None:
            if time.monotonic() - self._start_time >= max_time.total_seconds():
                self.progress.should_stop = True

    def _validation_due(self, batch_idx: int, is_last: bool) -> bool:
        """Whether validation is due after this training batch (Lightning's rules)."""
        data = self.data
        if data.val_enabled is None:
            data.val_enabled = data.val_possible()
        if not data.val_enabled:
            return False
        n = self.settings.check_val_every_n_epoch
        if n is not None and (self.progress.current_epoch + 1) % n != 0:
            return False
        if self.progress.should_stop and self.can_stop_early:
            return True
        if data.val_check_batch == float("inf"):
            return is_last
        current = self.progress.total_batch_idx if n is None else batch_idx + 1
        return current % data.val_check_batch == 0

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> None:
        self._start_time = time.monotonic()
        progress, metrics = self.progress, self.metrics
        if not progress.optimizer_steps:
            progress.optimizer_steps = [0] * len(self.optimization.optimizers)
        if self.done:
            return
        self.data.load_train_dataloader()
        if self.settings.limit_train_batches == 0:
            return  # Lightning skips training entirely: no on_train_start / on_train_end
        if self.data.num_training_batches == 0:  # an empty loader: skipped the same way, in Lightning's words
            rank_zero_info("`Trainer.fit` stopped: No training batches.")
            return
        n = self.settings.check_val_every_n_epoch
        if self.data.val_possible() and (n is None or (progress.current_epoch + 1) % n == 0):
            self.data.eval_loaders(RunningStage.VALIDATING)  # Lightning sets up validation data before on_train_start
        self._collect_outputs = callable(getattr(self.hooks.lightning_module, "training_epoch_end", None))
        self._several_ranks = self.strategy.world_size > 1
        self._transfers = self.transfer.changes_batches()
        # the per-batch routine, chosen once: 1.x several optimizers and tbptt have their own
        self._automatic_step, self._manual_step = batch_routines(self.optimization)
        # values logged in on_train_start count towards the first epoch (reset after each epoch end)
        metrics.train.reset()
        metrics.train.set_defaults(on_step=False, on_epoch=True)
        metrics.activate(metrics.train)
        self.hooks.call("on_train_start")
        self.report = run_events.fit_progress_report(self, self.data.estimated_stepping_batches())
        # a stop requested before min_epochs/min_steps are met stays requested: training ends
        # at the first boundary where they are (Lightning)
        with self.report.until_done(lambda: progress.global_step):  # finished, stopped or failed
            while not self.done:
                self._run_epoch()
        self.hooks.call("on_train_end")

    def _run_epoch(self) -> None:
        progress, data, hooks = self.progress, self.data, self.hooks
        n = self.settings.reload_dataloaders_every_n_epochs
        if n and progress.current_epoch > 0 and progress.current_epoch % n == 0 and not self._restored_mid_epoch:
            data.load_train_dataloader(reload=True)
            data.val_loaders = None
        restarted_mid_epoch = self._restored_mid_epoch
        if not restarted_mid_epoch:
            progress.batch_idx = 0
        self._restored_mid_epoch = False
        self.metrics.train.set_defaults(on_step=False, on_epoch=True)
        self.metrics.activate(self.metrics.train)
        if not restarted_mid_epoch:  # the interrupted run already started this epoch (Lightning)
            hooks.call("on_train_epoch_start")
        self._epoch_outputs = []
        loader = data.train_dataloader
        num_batches = data.num_training_batches
        for batch_idx, batch in self.fetcher.epoch_iterator(loader, num_batches, progress.current_epoch):
            if self._run_batch(batch, batch_idx, num_batches) == -1:
                break
            if self.max_steps_reached or (progress.should_stop and self.can_stop_early):
                break
        if num_batches == float("inf") and progress.batch_idx > 0:
            self._finish_unsized_epoch()
        self._on_epoch_end()

    def _finish_unsized_epoch(self) -> None:
        """A loader without a length ended: what a sized epoch does after its last batch."""
        last = self.progress.batch_idx - 1
        self.optimization.step_schedulers("epoch", last, plateau=False)
        # only in "validate at the end of each epoch" mode; interval checks already ran per batch
        if self.data.val_check_batch == float("inf") and self._validation_due(last, is_last=True):
            self.hooks.call_module("on_validation_model_zero_grad")
            self.validate()
            self.metrics.activate(self.metrics.train)

    def _run_batch(self, batch: Any, batch_idx: int, num_batches: float) -> int | None:
        hooks, progress, optimization = self.hooks, self.progress, self.optimization
        trainer, module = hooks.trainer, hooks.lightning_module
        results = self.metrics.train
        settings = self.settings
        if self._transfers:
            batch = self.transfer(batch, 0)
        results.new_batch(batch)
        results.set_defaults(on_step=True, on_epoch=False)
        is_last = progress.is_last_batch = batch_idx + 1 >= num_batches  # Lightning: set before the batch hooks
        for fn in hooks.step_hooks.train_batch_start:
            if fn is not None:
                fn(trainer, module, batch, batch_idx)
        step = hooks.step_hooks  # read again after each group of hooks: they may assign trainer.callbacks
        if step.module_train_batch_start is not None and step.module_train_batch_start(batch, batch_idx) == -1:
            return -1
        accumulate = settings.accumulate_grad_batches
        should_accumulate = (batch_idx + 1) % accumulate != 0 and not is_last
        automatic = module.automatic_optimization
        if automatic:
            # nobody observes the zeroing: the optimization step may free the gradients early
            silent_zero_grad = (not step.before_zero_grad and step.module_before_zero_grad is None
                                and step.module_optimizer_zero_grad is None)  # fmt: skip
            output, loss = self._automatic_step(batch, batch_idx, should_accumulate, accumulate, silent_zero_grad)
        else:
            output, loss = self._manual_step(batch, batch_idx)
        # looked up after the step: a callback appended meanwhile gets this batch's hook (Lightning)
        step = hooks.step_hooks
        has_end_hooks = bool(step.train_batch_end) or step.module_train_batch_end is not None
        # detaching and packing the outputs costs a tensor op: only when someone reads them
        outputs = (
            _batch_outputs(output, loss, automatic, accumulate) if has_end_hooks or self._collect_outputs else None
        )
        if self._collect_outputs:
            self._epoch_outputs.append(outputs)
        if optimization.lr_scheduler_configs:
            if not should_accumulate:
                optimization.step_schedulers("step", batch_idx, plateau=False)
            if is_last:
                optimization.step_schedulers("epoch", batch_idx, plateau=False)
        self._end_batch(outputs, batch, batch_idx, should_accumulate and automatic, has_end_hooks)
        # the guards below keep per-step costs at zero for features that are off
        if self.data.val_enabled is not False and self._validation_due(batch_idx, is_last):
            if not should_accumulate:
                hooks.call_module("on_validation_model_zero_grad")
            self.validate()
            self.metrics.activate(results)
        if optimization.lr_scheduler_configs:
            optimization.step_schedulers("step", batch_idx, plateau=True)
        if not should_accumulate:
            progress.batches_that_stepped += 1
        if settings.max_time is not None:
            self._check_max_time()
        # gradients accumulated in this window are in no checkpoint (and under DDP's no_sync
        # they differ per rank): a stop waits for the window's optimizer step to be exact
        preemption = self.checkpoints.preemption
        if preemption is not None and not should_accumulate and (self._several_ranks or preemption.received_signal is not None):
            self.checkpoints.check_preemption()
        if self.report.run_dir is not None:  # without one, tick() has nothing to write
            self.report.tick(progress.global_step)
        return None

    def _end_batch(self, outputs: Any, batch: Any, batch_idx: int, accumulating: bool, has_end_hooks: bool) -> None:
        """The batch is done: progress, on_train_batch_end, step metrics (not sent while accumulating)."""
        hooks, progress, settings = self.hooks, self.progress, self.settings
        trainer, module = hooks.trainer, hooks.lightning_module
        results = self.metrics.train
        # the batch counts as finished from here: a checkpoint saved by on_train_batch_end resumes after it
        progress.batch_idx = batch_idx + 1
        progress.total_batch_idx += 1
        self.fetcher.batches_done = batch_idx + 1
        if results.logged_this_batch and has_end_hooks:  # the progress bar shows this batch's values
            self.metrics.publish_step(should_log=False, batch_done=False)
        # a checkpoint saved by these hooks says so: Lightning counts the batch completed only after them
        self.batch_end_running = True
        try:
            for fn in hooks.step_hooks.train_batch_end:
                if fn is not None:
                    fn(trainer, module, outputs, batch, batch_idx)
            end_hook = hooks.step_hooks.module_train_batch_end
            if end_hook is not None:
                end_hook(outputs, batch, batch_idx)
        finally:
            self.batch_end_running = False
        # Lightning sends nothing to the loggers on batches that only accumulate gradients
        if results.logged_this_batch:
            self.metrics.publish_step(
                should_log=not accumulating and (progress.batches_that_stepped + 1) % settings.log_every_n_steps == 0,
                accumulating=accumulating,
                force_log=bool(settings.fast_dev_run),
            )

    def _on_epoch_end(self) -> None:
        self.checkpoints.epoch_ended()
        hooks, progress, metrics = self.hooks, self.progress, self.metrics
        trainer, module = hooks.trainer, hooks.lightning_module
        results = metrics.train
        results.set_defaults(on_step=False, on_epoch=True)
        self.epoch_processed = True
        legacy = getattr(module, "training_epoch_end", None)
        with hooks.running("on_train_epoch_end"):  # epoch-level logging rules for everything below
            if self._collect_outputs and callable(legacy):
                legacy(self._epoch_outputs)
            self._epoch_outputs = []
            # the epoch has ended: every on_train_epoch_end hook sees the epoch values (Lightning's
            # epoch_end_reached()); published again below with what the module's hook logged
            metrics.publish_epoch(results, log=False)
            plain, monitoring = hooks.monitoring_split("on_train_epoch_end")
            for fn in plain:
                fn(trainer, module)
            hook = hooks.module("on_train_epoch_end")
            if hook is not None:
                hook()
            metrics.publish_epoch(results, log=False)
            for fn in monitoring:
                fn(trainer, module)
        # epoch metrics go to the loggers at the step of the epoch's last batch (Lightning)
        metrics.publish_epoch(results, log=True, step=max(progress.batches_that_stepped - 1, 0))
        self.optimization.step_schedulers("epoch", progress.batch_idx, plateau=True)
        results.reset()
        # any rank asking to stop stops all of them, at the same epoch boundary
        progress.should_stop = self.strategy.reduce_boolean_decision(progress.should_stop, all=False)
        progress.current_epoch += 1
        self.epoch_processed = False
        progress.batch_idx = 0
        self.fetcher.batches_done = 0
        self._check_max_time()

