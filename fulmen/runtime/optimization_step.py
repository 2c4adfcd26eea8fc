"""One optimization step as Lightning takes it: forward, backward with its hooks, gradient
clipping after the closure, the optimizer step, learning-rate schedulers.

The ``OptimizationStep`` owns the run's optimizers (plain and wrapped as ``LightningOptimizer``)
and scheduler configs, and counts each optimizer step in the ``TrainingProgress``. The fit
loop decides when a step is due (accumulation); ``LightningModule.manual_backward`` and
``optimizers()`` come here too.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fulmen.core.hooks import is_overridden
from fulmen.core.module import LightningModule
from fulmen.errors import MisconfigurationException
from fulmen.runtime.hook_caller import HookCaller
from fulmen.runtime.metric_publisher import MetricPublisher
from fulmen.runtime.optim import clip_gradients, parse_optimizers, validate_multiple_optimizers, wrap_optimizer
from fulmen.runtime.precision import PrecisionPlugin
from fulmen.runtime.training_progress import TrainingProgress

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.hang_rescue import HangRescue


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


def check_fit_configuration(model: LightningModule, gradient_clip_val: float | None, accumulate_grad_batches: int) -> None:
    """Configuration errors a fit can detect before anything runs (Lightning checks them first too)."""
    if not is_overridden(model, "training_step", LightningModule):
        model.training_step()  # raises the "missing training_step" error with its HINT
    if gradient_clip_val and not model.automatic_optimization:
        raise MisconfigurationException(
            "Trainer(gradient_clip_val=...) clips automatically, but this module uses manual optimization.\n"
            "HINT: remove gradient_clip_val and call self.clip_gradients(opt, gradient_clip_val=...) "
            "in training_step before opt.step()."
        )
    if model.automatic_optimization is False and accumulate_grad_batches != 1:
        raise MisconfigurationException(
            "Trainer(accumulate_grad_batches>1) does not apply to manual optimization.\n"
            "HINT: accumulate in training_step yourself and step every N batches."
        )


class OptimizationStep:
    """Backward, clipping, optimizer step and schedulers of one Trainer."""

    def __init__(self, precision_plugin: PrecisionPlugin, hooks: HookCaller, metrics: MetricPublisher,
                 progress: TrainingProgress, gradient_clip_val: float | None, gradient_clip_algorithm: str | None,
                 track_grad_norm: Any = -1) -> None:  # fmt: skip
        self.precision_plugin = precision_plugin
        self.hooks = hooks
        self.metrics = metrics
        self.progress = progress
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.track_grad_norm = track_grad_norm  # legacy flag: log gradient p-norms
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lightning_optimizers: list[Any] = []
        self.lr_scheduler_configs: list[Any] = []
        self._optimizer_index: dict[int, int] = {}
        self.frequencies: list[int] = []  # 1.x optimizer dicts' "frequency" (several optimizers)
        self.optimizer_idx: int | None = None  # set while a 1.x several-optimizer step runs
        # with 1.x frequencies: the optimizers active on the latest batch, whose schedulers alone step
        self.scheduler_optimizers: list[int] | None = None
        self._idx_hooks: set[str] = set()  # hooks whose override takes that index (1.x signatures)
        self._warned: set[str] = set()
        # the forward of a training step: through the strategy's wrapper with several ranks (DDP's hooks)
        self.model: torch.nn.Module | None = None
        self.module_wrapper: Any = None
        self._training_step_end: Any = None
        # training steps without zero_grad and backward (StochasticWeightAveraging's BatchNorm epoch)
        self.skip_backward = False
        # what the precision needs per step: autocast around the forward, loss scaling (fp16's
        # GradScaler, which also makes its own optimizer step: no direct step then)
        self._autocast = precision_plugin.is_mixed
        self._scales_loss = precision_plugin.scaler is not None
        self._direct_step = precision_plugin.scaler is None
        # set while a multi-rank fit runs (CheckpointFlow): backward is where a rank waits for
        # its peers' gradients without changing its state, so a stop signal can be rescued there
        self.rescue: HangRescue | None = None

    def setup(self, model: torch.nn.Module, module_wrapper: Any) -> None:
        """The run's forward path: ``model`` (what the strategy returned), the wrapper when one is used."""
        self.model = model
        self.module_wrapper = module_wrapper
        self._training_step_end = getattr(self.hooks.lightning_module, "training_step_end", None)

    def configure_optimizers(self) -> None:
        """Run ``configure_optimizers`` and keep what it returns (fit only)."""
        module = self.hooks.lightning_module
        conf = self.hooks.call_module("configure_optimizers")
        self.frequencies, self._idx_hooks, self.scheduler_optimizers = [], set(), None
        self.optimizers, self.lr_scheduler_configs = parse_optimizers(conf)
        several = module.automatic_optimization and len(self.optimizers) > 1
        if several:
            # Lightning 1.x: several optimizers with training_step(batch, batch_idx, optimizer_idx);
            # imported here because legacy_optimization imports this module
            from fulmen.runtime import legacy_optimization as legacy

            if legacy.takes_optimizer_idx(module):
                self.frequencies = legacy.optimizer_frequencies(conf, len(self.optimizers))
                self._idx_hooks = legacy.hooks_taking_optimizer_idx(self.hooks)
                legacy.warn_lightning2(module, len(self.optimizers))
                several = False
        validate_multiple_optimizers(self.optimizers, several)
        self.lightning_optimizers = [wrap_optimizer(o, self.optimizer_step) for o in self.optimizers]
        self._optimizer_index = {id(o): i for i, o in enumerate(self.optimizers)}
        if len(self.progress.optimizer_steps) != len(self.optimizers):
            self.progress.optimizer_steps = [0] * len(self.optimizers)

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=3)

    # ---- forward and backward --------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        """The module's ``training_step`` (and legacy ``training_step_end``) on one batch."""
        if self.module_wrapper is not None:
            # several ranks: go through the strategy's wrapper so DDP's forward hooks run
            self.module_wrapper.step_name = "training_step"
            output = self.model(batch, batch_idx)
        else:
            output = self.hooks.lightning_module.training_step(batch, batch_idx)
        if self._training_step_end is not None:
            output = self._training_step_end(output)
        return output

    def backward(self, loss: Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        """Backward with its hooks and the precision's loss scaling (``manual_backward`` too)."""
        hooks = self.hooks
        trainer, module = hooks.trainer, hooks.lightning_module
        for fn in hooks.step_hooks.before_backward:
            if fn is not None:
                fn(trainer, module, loss)
        step = hooks.step_hooks  # read again after each group of hooks: they may assign trainer.callbacks
        if step.module_before_backward is not None:
            step.module_before_backward(loss)
        scaled = self.precision_plugin.pre_backward(loss) if self._scales_loss else loss
        if step.module_backward is not None:
            step.module_backward(scaled, *args, **kwargs)
        elif self.rescue is not None and module.automatic_optimization:
            with self.rescue.in_backward():
                scaled.backward(*args, **kwargs)
        else:
            scaled.backward(*args, **kwargs)
        for fn in hooks.step_hooks.after_backward:
            if fn is not None:
                fn(trainer, module)
        if step.module_after_backward is not None:
            step.module_after_backward()

    # ---- one training batch ----------------------------------------------------------
    def automatic_step(self, batch: Any, batch_idx: int, should_accumulate: bool, accumulate: int,
                       silent_zero_grad: bool) -> tuple[Any, Tensor | None]:  # fmt: skip
        """Forward, backward and (unless ``should_accumulate``) the optimizer step; (output, loss).

        The optimizer step: through the module's ``optimizer_step`` override when there is one,
        else ``LightningOptimizer.step`` -> the precision's step (which runs the closure inside
        ``optimizer.step`` and the clipping hooks after it). Without a GradScaler that path
        is exactly ``optimizer.step(closure)`` with the after-closure hooks at the closure's
        end, so it is taken directly (no wrapper layers per step); the closure still runs
        inside ``optimizer.step`` (LBFGS calls it several times, each time with its hooks).
        """
        hooks = self.hooks
        epoch = self.progress.current_epoch
        optimizer = self.optimizers[0] if self.optimizers else None
        # Lightning's skip_backward skips the zero_grad with it: the window's optimizer step then
        # applies the gradients left from before (what Lightning's SWA BatchNorm epoch does)
        first_in_window = batch_idx % accumulate == 0 and not self.skip_backward
        holder: list[Any] = [None, None, False]  # output, loss, closure ran
        # Nobody observes the zeroing (no zero-grad hooks): free the old gradients *before* the
        # forward, so their memory serves the activations (same numbers, less peak memory and
        # allocator work); with hooks, Lightning's order (after training_step) is kept.
        early_zero = first_in_window and optimizer is not None and silent_zero_grad
        if early_zero:
            optimizer.zero_grad()
        stepping = not should_accumulate and optimizer is not None
        step_hook = hooks.step_hooks.module_optimizer_step if stepping else None
        # the optimizer the direct step steps (LightningOptimizer.step's): None for the other paths
        direct = self.lightning_optimizers[0]._optimizer if stepping and step_hook is None and self._direct_step else None

        def closure() -> Tensor | None:
            if self._autocast:
                with self.precision_plugin.forward_context():
                    output = self.training_step(batch, batch_idx)
            else:
                output = self.training_step(batch, batch_idx)
            loss = loss_from_output(output, automatic=True)
            holder[0], holder[1], holder[2] = output, loss, True
            if loss is None:
                self.warn_once("training_step returned None: the optimizer step for this batch has no gradient.")
            if first_in_window and optimizer is not None and not early_zero:
                self._zero_grad(optimizer, epoch, batch_idx)
            if loss is not None and not self.skip_backward:
                self.backward(loss / accumulate if accumulate > 1 else loss, optimizer)
            if direct is not None:
                self._after_closure(direct, True)
            return loss

        if not stepping:
            no_sync = getattr(self.model, "no_sync", None)  # DDP: no gradient all-reduce while accumulating
            with no_sync() if should_accumulate and no_sync is not None else contextlib.nullcontext():
                closure()
            if optimizer is None and not should_accumulate:
                self.progress.count_optimizer_step(None)  # Lightning counts the absent optimizer's steps too
            return holder[0], holder[1]
        if step_hook is not None:
            step_hook(epoch, batch_idx, self.lightning_optimizers[0], closure)
        elif direct is not None:
            direct.step(closure=closure)
            self.progress.count_optimizer_step(self._optimizer_index.get(id(direct), 0))
        else:
            self.lightning_optimizers[0].step(closure=closure)
        if not holder[2]:
            raise MisconfigurationException(
                "optimizer_step() returned without calling the optimizer closure, so training_step never ran.\n"
                "HINT: call optimizer.step(closure=optimizer_closure) in your optimizer_step override."
            )
        return holder[0], holder[1]

    def _zero_grad(self, optimizer: Any, epoch: int, batch_idx: int) -> None:
        """on_before_zero_grad hooks, then the module's ``optimizer_zero_grad`` (or ``zero_grad``)."""
        hooks = self.hooks
        for fn in hooks.step_hooks.before_zero_grad:
            if fn is not None:
                fn(hooks.trainer, hooks.lightning_module, optimizer)
        step = hooks.step_hooks
        if step.module_before_zero_grad is not None:
            step.module_before_zero_grad(optimizer)
        if step.module_optimizer_zero_grad is not None:
            step.module_optimizer_zero_grad(epoch, batch_idx, optimizer)
        else:
            optimizer.zero_grad()

    def manual_step(self, batch: Any, batch_idx: int) -> tuple[Any, None]:
        """Manual optimization: ``training_step`` does its own backward and steps."""
        with self.precision_plugin.forward_context():
            output = self.training_step(batch, batch_idx)
        loss_from_output(output, automatic=False)
        return output, None

    # ---- the optimizer step ----------------------------------------------------------
    def optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Any) -> Any:
        """What ``LightningOptimizer.step`` does: precision step with hooks and clipping after the closure."""
        automatic = self.hooks.lightning_module.automatic_optimization
        result = self.precision_plugin.optimizer_step(
            optimizer, closure, functools.partial(self._after_closure, optimizer, automatic), automatic=automatic
        )
        self.progress.count_optimizer_step(self._optimizer_index.get(id(optimizer), 0))
        return result

    def clip_gradients(self, optimizer: Any, gradient_clip_val: float | None,
                       gradient_clip_algorithm: str | None) -> None:
        """Clip ``optimizer``'s gradients (what ``LightningModule.clip_gradients`` does through its trainer)."""
        clip_gradients(self.precision_plugin, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def _after_closure(self, optimizer: torch.optim.Optimizer, automatic: bool) -> None:
        hooks = self.hooks
        if self.optimizer_idx is not None:  # 1.x several optimizers: the hooks may take the index
            self._after_closure_1x(optimizer, self.optimizer_idx)
            return
        for fn in hooks.step_hooks.before_optimizer_step:
            if fn is not None:
                fn(hooks.trainer, hooks.lightning_module, optimizer)
        step = hooks.step_hooks
        if step.module_before_optimizer_step is not None:
            step.module_before_optimizer_step(optimizer)
        if self.track_grad_norm not in (-1, None):
            self._log_grad_norms()
        if automatic:
            clip = step.module_configure_gradient_clipping
            if clip is not None:
                clip(optimizer, gradient_clip_val=self.gradient_clip_val,
                     gradient_clip_algorithm=self.gradient_clip_algorithm)  # fmt: skip
            elif self.gradient_clip_val:
                clip_gradients(self.precision_plugin, optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)

    def _after_closure_1x(self, optimizer: torch.optim.Optimizer, index: int) -> None:
        """``_after_closure`` with 1.x's ``optimizer_idx`` for the hooks whose override takes it."""
        hooks, takes = self.hooks, self._idx_hooks
        for fn in hooks.callbacks("on_before_optimizer_step"):
            if fn is not None:
                fn(hooks.trainer, hooks.lightning_module, optimizer, *((index,) if fn in takes else ()))
        hook = hooks.module("on_before_optimizer_step")
        if hook is not None:
            hook(optimizer, *((index,) if "on_before_optimizer_step" in takes else ()))
        if self.track_grad_norm not in (-1, None):
            self._log_grad_norms()
        clip = hooks.module("configure_gradient_clipping")
        if clip is None:
            clip_gradients(self.precision_plugin, optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
        elif "configure_gradient_clipping" in takes:
            clip(optimizer, index, self.gradient_clip_val, self.gradient_clip_algorithm)
        else:
            clip(optimizer, gradient_clip_val=self.gradient_clip_val,
                 gradient_clip_algorithm=self.gradient_clip_algorithm)  # fmt: skip

    def _log_grad_norms(self) -> None:
        """Legacy ``track_grad_norm=p``: log each parameter's gradient p-norm and the total, as 1.9.5
        did (rounded to 4 decimals, on step and epoch: tests/compat/reference_1x/track_grad_norm_2.json)."""
        p = float(self.track_grad_norm)
        norms = {}
        for name, param in self.hooks.lightning_module.named_parameters():
            if param.grad is not None:
                norms[f"grad_{p}_norm/{name}"] = torch.linalg.vector_norm(param.grad.detach(), ord=p)
        if norms:
            total = torch.linalg.vector_norm(torch.stack(list(norms.values())), ord=p)
            norms[f"grad_{p}_norm_total"] = total
            for key, value in norms.items():
                value = torch.tensor(round(value.item(), 4))
                self.metrics.train.log(key, value, prog_bar=False, logger=True, on_step=True, on_epoch=True,
                                       reduce_fx="mean", enable_graph=False, sync_dist=False,
                                       add_dataloader_idx=False, batch_size=None, rank_zero_only=False)  # fmt: skip

    # ---- schedulers -----------------------------------------------------------------
    def step_schedulers(self, interval: str, batch_idx: int, plateau: bool) -> None:
        """Step the schedulers of ``interval`` (plateau ones only when ``plateau``) that are due."""
        configs = self.lr_scheduler_configs
        module = self.hooks.lightning_module
        if not configs or not module.automatic_optimization:
            return
        active = self.scheduler_optimizers
        for config in configs:
            if config.reduce_on_plateau != plateau or config.interval != interval:
                continue
            if active is not None and self._optimizer_index.get(id(config.scheduler.optimizer)) not in active:
                continue
            index = (batch_idx if interval == "step" else self.progress.current_epoch) + 1
            if index % config.frequency != 0:
                continue
            metric = None
            if config.reduce_on_plateau:
                callback_metrics = self.metrics.callback_metrics
                metric = callback_metrics.get(config.monitor)
                if metric is None:
                    available = sorted(callback_metrics)
                    if config.strict:
                        raise MisconfigurationException(
                            f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged. "
                            f"Available metrics: {available}.\n"
                            "HINT: self.log the monitored value, or fix the 'monitor' key of the scheduler dict."
                        )
                    self.warn_once(f"ReduceLROnPlateau skipped: {config.monitor!r} not in {available}.")
                    continue
            module.lr_scheduler_step(config.scheduler, metric)
