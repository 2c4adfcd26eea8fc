"""The fit loop: epochs of training batches, optimizer steps, schedulers, validation checks.

Readable top to bottom: ``run`` -> ``_run_epoch`` -> ``_run_batch`` -> automatic or manual
optimization. Hooks come from the Trainer's ``HookTable``, so hooks nobody overrides are
skipped rather than called. Progress (epoch, batch in epoch, global step, optimizer steps,
data position) is in ``state_dict()`` for checkpoints and exact resume.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

from torch import Tensor

from fulmen.errors import MisconfigurationException
from fulmen.runtime.fetcher import DataFetcher

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


def loss_from_output(output: Any, automatic: bool) -> Tensor | None:
    """The loss in a training_step return value (tensor, dict with "loss", or None)."""
    if output is None:
        return None
    if isinstance(output, Tensor):
        if automatic and output.numel() != 1:
            raise MisconfigurationException(
                f"training_step returned a tensor of shape {tuple(output.shape)}; automatic optimization "
                "needs a scalar loss.\nHINT: return loss.mean() (or a dict {'loss': scalar, ...})."
            )
        return output
    if isinstance(output, dict):
        if "loss" not in output:
            if not automatic:
                return None
            raise MisconfigurationException(
                f"training_step returned a dict without a 'loss' key (keys: {sorted(map(str, output))}).\n"
                "HINT: return {'loss': loss, ...other values for on_train_batch_end}."
            )
        return loss_from_output(output["loss"], automatic)
    raise MisconfigurationException(
        f"training_step returned {type(output).__name__}; expected a loss tensor, a dict with a 'loss' key, "
        "or None (to skip the batch).\nHINT: return the scalar loss tensor."
    )


def _batch_outputs(output: Any, loss: Tensor | None, automatic: bool, normalize: int) -> Any:
    """What on_train_batch_end receives as ``outputs`` (Lightning: {"loss": detached, **extra})."""
    if automatic:
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


class FitLoop:
    """Training progress and the loop that advances it."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.current_epoch = 0
        self.global_step = 0
        self.batch_idx = 0  # batches finished in the current epoch
        self.total_batch_idx = 0
        self.batches_that_stepped = 0
        self.optimizer_steps: list[int] = []
        self.fetcher = DataFetcher()
        self._restored_mid_epoch = False
        self.epoch_processed = False  # True while the epoch-end hooks of current_epoch run
        self.batch_end_running = False  # True while the on_train_batch_end hooks run
        self._start_time: float | None = None
        self._epoch_outputs: list[Any] = []
        self._need_outputs = True
        self._has_batch_end_hooks = True
        self._silent_zero_grad = False

    # ---- checkpoint accessors ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Progress for checkpoints: epoch, batch_idx (finished in epoch), steps, data position."""
        return {
            "epoch": self.current_epoch,
            "batch_idx": self.batch_idx,
            "total_batch_idx": self.total_batch_idx,
            "global_step": self.global_step,
            "batches_that_stepped": self.batches_that_stepped,
            "epoch_processed": self.epoch_processed,
            "batch_end_running": self.batch_end_running,
            "optimizer_steps": list(self.optimizer_steps),
            "data": self.fetcher.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: mid-epoch states resume at the next batch of that epoch."""
        self.current_epoch = int(state.get("epoch", 0))
        self.batch_idx = int(state.get("batch_idx", 0))
        self.total_batch_idx = int(state.get("total_batch_idx", 0))
        self.global_step = int(state.get("global_step", 0))
        self.batches_that_stepped = int(state.get("batches_that_stepped", self.global_step))
        self.optimizer_steps = list(state.get("optimizer_steps", []))
        data = state.get("data")
        if state.get("epoch_processed"):
            # saved while the epoch-end hooks ran: that epoch is over, the next one starts fresh
            self.current_epoch += 1
            self.batch_idx = 0
            if data is not None:
                self.fetcher.load_state_dict({"rng_at_save": data.get("rng_at_save")})
        elif data is not None:
            self.fetcher.load_state_dict(data)
        self._restored_mid_epoch = self.batch_idx > 0

    @property
    def restarted_mid_epoch(self) -> bool:
        """True from a mid-epoch restore until that epoch continues; its ``on_train_epoch_start``
        does not run again (Lightning), so the progress bar sets itself up in ``on_train_start``."""
        return self._restored_mid_epoch

    # ---- stopping ------------------------------------------------------------------
    @property
    def max_steps_reached(self) -> bool:
        max_steps = self.trainer.max_steps
        return max_steps is not None and max_steps >= 0 and self.global_step >= max_steps

    @property
    def can_stop_early(self) -> bool:
        """min_epochs / min_steps are met, so should_stop may end training."""
        t = self.trainer
        met_epochs = t.min_epochs is None or self.current_epoch >= t.min_epochs
        met_steps = t.min_steps is None or self.global_step >= t.min_steps
        return met_epochs and met_steps

    @property
    def done(self) -> bool:
        t = self.trainer
        if t.max_epochs == 0 or self.max_steps_reached:
            return True
        if t.max_epochs is not None and t.max_epochs >= 0 and self.current_epoch >= t.max_epochs:
            return True
        return t.should_stop and self.can_stop_early

    def _check_max_time(self) -> None:
        t = self.trainer
        if t.max_time is not None and self._start_time is not None:
            if time.monotonic() - self._start_time >= t.max_time.total_seconds():
                t.should_stop = True

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> None:
        t = self.trainer
        self._start_time = time.monotonic()
        if not self.optimizer_steps:
            self.optimizer_steps = [0] * len(t.optimizers)
        if self.done:
            return
        t._load_train_dataloader()
        if t.limit_train_batches == 0:
            return  # Lightning skips training entirely: no on_train_start / on_train_end
        n = t.check_val_every_n_epoch
        if t._val_possible() and (n is None or (self.current_epoch + 1) % n == 0):
            t._eval_loaders("validate")  # Lightning sets up validation data before on_train_start
        # values logged in on_train_start count towards the first epoch (reset after each epoch end)
        t._train_results.reset()
        t._train_results.set_defaults(on_step=False, on_epoch=True)
        t._results = t._train_results
        t._call("on_train_start")
        # a stop requested before min_epochs/min_steps are met stays requested: training ends
        # at the first boundary where they are (Lightning)
        while not self.done:
            self._run_epoch()
        t._call("on_train_end")

    def _run_epoch(self) -> None:
        t = self.trainer
        n = t.reload_dataloaders_every_n_epochs
        if n and self.current_epoch > 0 and self.current_epoch % n == 0 and not self._restored_mid_epoch:
            t._load_train_dataloader(reload=True)
            t._val_loaders = None
        restarted_mid_epoch = self._restored_mid_epoch
        if not restarted_mid_epoch:
            self.batch_idx = 0
        self._restored_mid_epoch = False
        t._train_results.set_defaults(on_step=False, on_epoch=True)
        t._results = t._train_results
        if not restarted_mid_epoch:  # the interrupted run already started this epoch (Lightning)
            t._call("on_train_epoch_start")
        self._epoch_outputs = []
        self._has_batch_end_hooks = t._hooks.any("on_train_batch_end")
        self._silent_zero_grad = not t._hooks.any("on_before_zero_grad") and t._hooks.module("optimizer_zero_grad") is None
        self._need_outputs = self._has_batch_end_hooks or t._collect_train_outputs
        loader = t.train_dataloader
        num_batches = t.num_training_batches
        for batch_idx, batch in self.fetcher.epoch_iterator(loader, num_batches, self.current_epoch):
            if self._run_batch(batch, batch_idx, num_batches) == -1:
                break
            if self.max_steps_reached or (t.should_stop and self.can_stop_early):
                break
        if num_batches == float("inf") and self.batch_idx > 0:
            self._finish_unsized_epoch()
        self._on_epoch_end()

    def _finish_unsized_epoch(self) -> None:
        """A loader without a length ended: what a sized epoch does after its last batch."""
        t = self.trainer
        t._step_schedulers("epoch", self.batch_idx - 1, plateau=False)
        # only in "validate at the end of each epoch" mode; interval checks already ran per batch
        if t.val_check_batch == float("inf") and t._should_validate(self.batch_idx - 1, is_last=True):
            t._module_hook("on_validation_model_zero_grad")
            t._run_evaluation("validate", in_fit=True)
            t._results = t._train_results

    def _run_batch(self, batch: Any, batch_idx: int, num_batches: float) -> int | None:
        t = self.trainer
        hooks = t._hooks
        module = t.lightning_module
        results = t._train_results
        batch = t._transfer_batch(batch, 0)
        results.new_batch(batch)
        results.set_defaults(on_step=True, on_epoch=False)
        for fn in hooks.callbacks("on_train_batch_start"):
            fn(t, module, batch, batch_idx)
        start_hook = hooks.module("on_train_batch_start")
        if start_hook is not None and start_hook(batch, batch_idx) == -1:
            return -1
        is_last = batch_idx + 1 >= num_batches
        accumulate = t.accumulate_grad_batches
        should_accumulate = (batch_idx + 1) % accumulate != 0 and not is_last
        if module.automatic_optimization:
            output, loss = self._automatic_step(batch, batch_idx, should_accumulate)
        else:
            output, loss = self._manual_step(batch, batch_idx)
        # detaching and packing the outputs costs a tensor op: only when someone reads them
        outputs = (
            _batch_outputs(output, loss, module.automatic_optimization, accumulate) if self._need_outputs else None
        )
        if t._collect_train_outputs:
            self._epoch_outputs.append(outputs)
        if t.lr_scheduler_configs:
            if not should_accumulate:
                t._step_schedulers("step", batch_idx, plateau=False)
            if is_last:
                t._step_schedulers("epoch", batch_idx, plateau=False)
        # the batch counts as finished from here: a checkpoint saved by on_train_batch_end resumes after it
        self.batch_idx = batch_idx + 1
        self.total_batch_idx += 1
        self.fetcher.batches_done = batch_idx + 1
        if results.logged_this_batch and self._has_batch_end_hooks:  # the progress bar shows this batch's values
            t._publish_step_metrics(should_log=False, batch_done=False)
        # a checkpoint saved by these hooks says so: Lightning counts the batch completed only after them
        self.batch_end_running = True
        try:
            for fn in hooks.callbacks("on_train_batch_end"):
                fn(t, module, outputs, batch, batch_idx)
            end_hook = hooks.module("on_train_batch_end")
            if end_hook is not None:
                end_hook(outputs, batch, batch_idx)
        finally:
            self.batch_end_running = False
        # Lightning sends nothing to the loggers on batches that only accumulate gradients
        accumulating = should_accumulate and module.automatic_optimization
        if results.logged_this_batch:
            t._publish_step_metrics(
                should_log=not accumulating and (self.batches_that_stepped + 1) % t.log_every_n_steps == 0,
                accumulating=accumulating,
            )
        # the guards below keep per-step costs at zero for features that are off
        if t._val_enabled is not False and t._should_validate(batch_idx, is_last):
            if not should_accumulate:
                t._module_hook("on_validation_model_zero_grad")
            t._run_evaluation("validate", in_fit=True)
            t._results = results
        if t.lr_scheduler_configs:
            t._step_schedulers("step", batch_idx, plateau=True)
        if not should_accumulate:
            self.batches_that_stepped += 1
        if t.max_time is not None:
            self._check_max_time()
        # gradients accumulated in this window are in no checkpoint (and under DDP's no_sync
        # they differ per rank): a stop waits for the window's optimizer step to be exact
        if t._preemption is not None and not should_accumulate:
            t._check_preemption()
        return None

    def _automatic_step(self, batch: Any, batch_idx: int, should_accumulate: bool) -> tuple[Any, Tensor | None]:
        t = self.trainer
        module = t.lightning_module
        hooks = t._hooks
        accumulate = t.accumulate_grad_batches
        optimizer = t.optimizers[0] if t.optimizers else None
        first_in_window = batch_idx % accumulate == 0
        holder: list[Any] = [None, None, False]  # output, loss, closure ran
        # Nobody observes the zeroing (no zero-grad hooks): free the old gradients *before* the
        # forward, so their memory serves the activations (same numbers, less peak memory and
        # allocator work); with hooks, Lightning's order (after training_step) is kept.
        early_zero = first_in_window and optimizer is not None and self._silent_zero_grad
        if early_zero:
            optimizer.zero_grad()

        def closure() -> Tensor | None:
            with t.precision_plugin.forward_context():
                output = t._training_step(batch, batch_idx)
            loss = loss_from_output(output, automatic=True)
            holder[0], holder[1], holder[2] = output, loss, True
            if loss is None:
                t._warn_once("training_step returned None: the optimizer step for this batch has no gradient.")
            if first_in_window and optimizer is not None and not early_zero:
                for fn in hooks.callbacks("on_before_zero_grad"):
                    fn(t, module, optimizer)
                hook = hooks.module("on_before_zero_grad")
                if hook is not None:
                    hook(optimizer)
                zero = hooks.module("optimizer_zero_grad")
                if zero is not None:
                    zero(self.current_epoch, batch_idx, optimizer)
                else:
                    optimizer.zero_grad()
            if loss is not None:
                t._backward(loss / accumulate if accumulate > 1 else loss, optimizer)
            return loss

        if should_accumulate or optimizer is None:
            no_sync = getattr(t.model, "no_sync", None)  # DDP: no gradient all-reduce while accumulating
            with no_sync() if should_accumulate and no_sync is not None else contextlib.nullcontext():
                closure()
            if optimizer is None and not should_accumulate:
                self.global_step += 1  # Lightning counts the (absent) optimizer's steps all the same
        else:
            wrapped = t._lightning_optimizers[0]
            step_hook = hooks.module("optimizer_step")
            if step_hook is not None:
                step_hook(self.current_epoch, batch_idx, wrapped, closure)
            else:
                wrapped.step(closure=closure)
            if not holder[2]:
                raise MisconfigurationException(
                    "optimizer_step() returned without calling the optimizer closure, so training_step never ran.\n"
                    "HINT: call optimizer.step(closure=optimizer_closure) in your optimizer_step override."
                )
        return holder[0], holder[1]

    def _manual_step(self, batch: Any, batch_idx: int) -> tuple[Any, None]:
        t = self.trainer
        with t.precision_plugin.forward_context():
            output = t._training_step(batch, batch_idx)
        loss_from_output(output, automatic=False)
        return output, None

    def _on_epoch_end(self) -> None:
        t = self.trainer
        module = t.lightning_module
        results = t._train_results
        results.set_defaults(on_step=False, on_epoch=True)
        self.epoch_processed = True
        legacy = getattr(module, "training_epoch_end", None)
        t._current_fx = "on_train_epoch_end"  # epoch-level logging rules for everything below
        try:
            if t._collect_train_outputs and callable(legacy):
                legacy(self._epoch_outputs)
            self._epoch_outputs = []
            # the epoch has ended: every on_train_epoch_end hook sees the epoch values (Lightning's
            # epoch_end_reached()); published again below with what the module's hook logged
            t._publish_epoch_metrics(results, log=False)
            plain, monitoring = t._hooks.monitoring_split("on_train_epoch_end")
            for fn in plain:
                fn(t, module)
            hook = t._hooks.module("on_train_epoch_end")
            if hook is not None:
                hook()
            t._publish_epoch_metrics(results, log=False)
            for fn in monitoring:
                fn(t, module)
        finally:
            t._current_fx = None
        # epoch metrics go to the loggers at the step of the epoch's last batch (Lightning)
        t._publish_epoch_metrics(results, log=True, step=max(self.batches_that_stepped - 1, 0))
        t._step_schedulers("epoch", self.batch_idx, plateau=True)
        results.reset()
        # any rank asking to stop stops all of them, at the same epoch boundary
        t.should_stop = t.strategy.reduce_boolean_decision(t.should_stop, all=False)
        self.current_epoch += 1
        self.epoch_processed = False
        self.batch_idx = 0
        self.fetcher.batches_done = 0
        self._check_max_time()


def estimated_stepping_batches(trainer: Trainer) -> int | float:
    """Optimizer steps the whole fit will take, computed like Lightning (max_steps caps it;
    a loader without a length gives max_steps; no epoch limit gives inf or max_steps)."""
    from fulmen.runtime.trainer_flags import parse_loop_limits

    _, max_epochs = parse_loop_limits(
        trainer.min_steps, trainer.max_steps, trainer.min_epochs, trainer.max_epochs, trainer.max_time is not None
    )
    if max_epochs == -1:
        return float("inf") if trainer.max_steps == -1 else trainer.max_steps
    trainer._load_train_dataloader()
    batches = trainer.num_training_batches
    if batches == float("inf"):
        return trainer.max_steps
    total = math.ceil(batches / trainer.accumulate_grad_batches) * max(max_epochs, 1)
    return min(total, trainer.max_steps) if trainer.max_steps != -1 else total
