"""Validation / test loop and predict loop: one pass over each eval dataloader, no gradients.

``EvaluationLoop`` works with the Trainer's collaborators (hook caller, metric publisher,
data sources, batch transfer, precision, the ``TrainerState`` whose ``stage`` it sets), not
the Trainer; the stage (a ``RunningStage``) names its hooks. Entry points: ``run_stage``
(trainer.validate / test / predict), ``sanity_check`` and ``validate_in_fit`` (fit).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

import torch

from fulmen.errors import MisconfigurationException
from fulmen.runtime.batch_transfer import BatchTransfer
from fulmen.runtime.data_sources import DataSources
from fulmen.runtime.hook_caller import HookCaller
from fulmen.runtime.metric_publisher import MetricPublisher
from fulmen.runtime.precision import PrecisionPlugin
from fulmen.runtime.results import EVERY_LOADER, ResultCollection, to_float_dict
from fulmen.runtime.stages import RunningStage, TrainerState

_DATALOADER_SUFFIX = re.compile(r"/dataloader_idx_(\d+)$")



def limited_batches(loader: Any, limit: int | float) -> Iterator[tuple[int, Any]]:
    """``(batch_idx, batch)`` for at most ``limit`` batches of ``loader``.

    Never asks the iterator for more than it will use (nor for a batch past its end), as
    Lightning does: a capped loader's sampler and workers are not advanced any further.
    """
    iterator = iter(loader)
    batch_idx = 0
    while batch_idx < limit:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch_idx, batch
        batch_idx += 1

def _grad_context(inference_mode: bool, in_fit: bool = False) -> contextlib.AbstractContextManager[Any]:
    # validation inside fit never uses inference mode: its tensors may meet training later (Lightning)
    return torch.inference_mode() if inference_mode and not in_fit else torch.no_grad()


def _capture_modes(module: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    """Every submodule's training flag, so evaluation can put back exactly what the user had."""
    return {m: m.training for m in module.modules()}


def _restore_modes(modes: dict[torch.nn.Module, bool]) -> None:
    for submodule, training in modes.items():
        submodule.training = training


class EvaluationLoop:
    """Runs validation, test and predict passes over prepared loaders."""

    def __init__(self, hooks: HookCaller, metrics: MetricPublisher, data: DataSources, transfer: BatchTransfer,
                 precision_plugin: PrecisionPlugin, state: TrainerState) -> None:  # fmt: skip
        self.hooks = hooks
        self.metrics = metrics
        self.data = data
        self.batches_run = 0  # every evaluation batch started, for the progress watchdog
        self.transfer = transfer
        self.precision_plugin = precision_plugin
        self.state = state

    @property
    def inference_mode(self) -> bool:
        return self.data.settings.inference_mode

    # ---- the passes a Trainer asks for --------------------------------------------------
    def run_stage(self, stage: RunningStage, return_predictions: bool) -> Any:
        """``trainer.validate / test / predict``: the stage's loaders, checked, then one pass."""
        module = self.hooks.lightning_module
        self.state.stage = stage
        if getattr(module, stage.step_name, None) is None:
            raise MisconfigurationException(
                f"trainer.{self.state.fn}() needs {type(module).__name__}.{stage.step_name}, which is not defined.\n"
                f"HINT: add `def {stage.step_name}(self, batch, batch_idx): ...`."
            )
        loaders, nums = self.data.eval_loaders(stage)
        if not loaders:
            fn, hook = self.state.fn, stage.dataloader_hook
            raise MisconfigurationException(
                f"trainer.{fn}() found no data: no dataloaders argument, no datamodule and no {hook}().\n"
                f"HINT: trainer.{fn}(model, dataloaders=DataLoader(...)) or define {hook}()."
            )
        if stage is RunningStage.PREDICTING:
            return self.predict(loaders, nums, return_predictions)
        return self.run(stage, loaders, nums, in_fit=False)

    def sanity_check(self) -> None:
        """A few validation batches before fit trains (``num_sanity_val_steps``); their metrics are discarded."""
        data, hooks = self.data, self.hooks
        if data.settings.num_sanity_val_steps == 0 or not data.val_possible():
            return
        self.state.stage = RunningStage.SANITY_CHECKING
        for fn in hooks.callbacks("on_sanity_check_start"):
            if fn is not None:
                fn(hooks.trainer, hooks.lightning_module)
        loaders, _ = data.eval_loaders(RunningStage.VALIDATING)
        if loaders:
            self.run(RunningStage.VALIDATING, loaders, data.num_sanity_val_batches, in_fit=True, sanity=True)
        for fn in hooks.callbacks("on_sanity_check_end"):
            if fn is not None:
                fn(hooks.trainer, hooks.lightning_module)
        self.metrics.clear()  # sanity metrics are discarded (Lightning)
        self.metrics.val.reset()
        self.state.stage = RunningStage.TRAINING

    def validate_in_fit(self) -> list[dict[str, float]]:
        """Validation inside fit (the fit loop calls it when a check is due)."""
        loaders, nums = self.data.eval_loaders(RunningStage.VALIDATING)
        if not loaders:
            return []
        previous = self.state.stage
        self.state.stage = RunningStage.VALIDATING
        try:
            return self.run(RunningStage.VALIDATING, loaders, nums, in_fit=True)
        finally:
            self.state.stage = previous

    # ---- one pass -----------------------------------------------------------------------

    def run(self, stage: RunningStage, loaders: list[Any], num_batches: list[float], *, in_fit: bool,
            sanity: bool = False) -> list[dict[str, float]]:  # fmt: skip
        """Run ``validation``/``test`` over ``loaders``; returns one metrics dict per loader."""
        hooks, metrics = self.hooks, self.metrics
        module = hooks.lightning_module
        prefix = stage.hook_prefix
        results = metrics.for_stage(stage)
        step_fn = getattr(module, stage.step_name, None)
        step_end = getattr(module, f"{prefix}_step_end", None)
        legacy_epoch_end = getattr(module, f"{prefix}_epoch_end", None)
        legacy_end = getattr(module, "validation_end", None) if stage is RunningStage.VALIDATING else None
        collect = callable(legacy_epoch_end) or callable(legacy_end)
        metrics.activate(results)
        results.reset()
        results.set_defaults(on_step=False, on_epoch=True)
        modes = _capture_modes(module)
        hooks.call_module(f"on_{prefix}_model_eval")
        hooks.call(f"on_{prefix}_start")
        hooks.call(f"on_{prefix}_epoch_start")
        multiple = len(loaders) > 1
        if multiple and step_fn is not None:
            _check_takes_dataloader_idx(step_fn, stage.step_name, stage.dataloader_hook)
        all_outputs = self._run_batches(stage, loaders, num_batches, results, step_fn, step_end, collect,
                                        in_fit=in_fit, sanity=sanity)  # fmt: skip
        if collect:
            gathered = all_outputs[0] if len(all_outputs) == 1 else all_outputs
            if callable(legacy_epoch_end):
                legacy_epoch_end(gathered)
            if callable(legacy_end):
                legacy_end(gathered)
        self._run_epoch_end_hooks(f"on_{prefix}_epoch_end", results)
        # the sanity check shows only what was logged outside the loaders' steps (Lightning)
        published = metrics.publish_epoch(results, log=not sanity, loader=None if sanity else EVERY_LOADER)
        hooks.call(f"on_{prefix}_end")
        results.reset()  # after the end hooks, which still see the logged metrics' states (Lightning)
        # an overridden *_model_train hook decides; otherwise every submodule gets its mode back (Lightning >= 2.2)
        train_hook = hooks.module(f"on_{prefix}_model_train")
        if train_hook is not None:
            train_hook()
        else:
            _restore_modes(modes)
        return split_by_dataloader(published, len(loaders))

    def _run_epoch_end_hooks(self, name: str, results: ResultCollection) -> None:
        """The callbacks' ``name`` hooks, then the module's, each seeing the epoch's values.

        Once an eval epoch has ended, Lightning's metric dicts hold its epoch values (its
        ``epoch_end_reached``): a module or callback reading ``callback_metrics["val_loss"]`` here
        gets this epoch's value. A single loader's values, and anything logged outside the loaders'
        steps (by these hooks too), are published before each hook; several loaders' values were
        published as each loader ended. What the module's hook logs is published by the caller.
        """
        hooks, metrics = self.hooks, self.metrics
        with hooks.running(name):
            metrics.publish_epoch(results, log=False, loader=None)
            for fn in hooks.callbacks(name):
                if fn is not None:
                    fn(hooks.trainer, hooks.lightning_module)
                    metrics.publish_epoch(results, log=False, loader=None)
            hook = hooks.module(name)
            if hook is not None:
                hook()

    def _run_batches(self, stage: RunningStage, loaders: list[Any], num_batches: list[float],
                     results: ResultCollection, step_fn: Any, step_end: Any, collect: bool, *, in_fit: bool,
                     sanity: bool) -> list[list[Any]]:  # fmt: skip
        """The batches of every loader, with their batch hooks; the step outputs when ``collect``."""
        hooks = self.hooks
        trainer, module = hooks.trainer, hooks.lightning_module
        prefix = stage.hook_prefix
        # the callbacks' views are looked up per batch: trainer.callbacks may be assigned meanwhile
        start_name, end_name = f"on_{prefix}_batch_start", f"on_{prefix}_batch_end"
        batch_start_mod = hooks.module(start_name)
        batch_end_mod = hooks.module(end_name)
        multiple = len(loaders) > 1
        all_outputs: list[list[Any]] = []
        with _grad_context(self.inference_mode, in_fit):
            for dl_idx, (loader, limit) in enumerate(zip(loaders, num_batches)):
                results.dataloader_idx = dl_idx if multiple else None
                extra = (dl_idx,) if multiple else ()
                outputs: list[Any] = []
                for batch_idx, batch in limited_batches(loader, limit):
                    self.batches_run += 1
                    batch = self.transfer(batch, dl_idx)
                    results.new_batch(batch)
                    for fn in hooks.callbacks(start_name):
                        if fn is not None:
                            fn(trainer, module, batch, batch_idx, *extra)
                    if batch_start_mod is not None:
                        batch_start_mod(batch, batch_idx, *extra)
                    out = None
                    if step_fn is not None:
                        with self.precision_plugin.forward_context():
                            out = step_fn(batch, batch_idx, *extra)
                        if callable(step_end):
                            out = step_end(out)
                    if collect:
                        outputs.append(out)
                    for fn in hooks.callbacks(end_name):
                        if fn is not None:
                            fn(trainer, module, out, batch, batch_idx, *extra)
                    if batch_end_mod is not None:
                        batch_end_mod(out, batch, batch_idx, *extra)
                    if results.logged_this_batch:
                        self.metrics.publish_eval_step(results, sanity=sanity)
                all_outputs.append(outputs)
                if multiple and not sanity:
                    # this loader has ended: its epoch values are published now, for every hook that
                    # runs after it (Lightning; the sanity check publishes none)
                    self.metrics.publish_epoch(results, log=False, loader=dl_idx)
        results.dataloader_idx = None
        return all_outputs

    def predict(self, loaders: list[Any], num_batches: list[float], return_predictions: bool) -> Any:
        """Run ``predict_step`` over ``loaders``; predictions per loader (a flat list for one loader)."""
        hooks = self.hooks
        trainer, module = hooks.trainer, hooks.lightning_module
        modes = _capture_modes(module)  # restored at the end (Lightning >= 2.2)
        hooks.call_module("on_predict_model_eval")
        hooks.call("on_predict_start")
        hooks.call("on_predict_epoch_start")
        multiple = len(loaders) > 1
        all_predictions: list[list[Any]] = []
        with _grad_context(self.inference_mode):
            for dl_idx, (loader, limit) in enumerate(zip(loaders, num_batches)):
                extra = (dl_idx,) if multiple else ()
                predictions: list[Any] = []
                for batch_idx, batch in limited_batches(loader, limit):
                    self.batches_run += 1
                    batch = self.transfer(batch, dl_idx)
                    for fn in hooks.callbacks("on_predict_batch_start"):
                        if fn is not None:
                            fn(trainer, module, batch, batch_idx, *extra)
                    hook = hooks.module("on_predict_batch_start")
                    if hook is not None:
                        hook(batch, batch_idx, *extra)
                    with self.precision_plugin.forward_context():
                        out = module.predict_step(batch, batch_idx, *extra)
                    if return_predictions:
                        predictions.append(out)
                    for fn in hooks.callbacks("on_predict_batch_end"):
                        if fn is not None:
                            fn(trainer, module, out, batch, batch_idx, *extra)
                    hook = hooks.module("on_predict_batch_end")
                    if hook is not None:
                        hook(out, batch, batch_idx, *extra)
                all_predictions.append(predictions)
        hooks.call("on_predict_epoch_end")
        hooks.call("on_predict_end")
        _restore_modes(modes)
        if not return_predictions:
            return None
        return all_predictions[0] if len(all_predictions) == 1 else all_predictions


def _check_takes_dataloader_idx(step_fn: Any, name: str, loader_hook: str) -> None:
    """Several loaders pass ``dataloader_idx``: a step that cannot take it fails before any batch."""
    try:
        params = inspect.signature(step_fn).parameters.values()
    except (TypeError, ValueError):  # builtins or C callables: let the call decide
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    raise RuntimeError(
        f"You provided multiple {loader_hook}, but no dataloader_idx argument in {name}().\n"
        f"HINT: add it: def {name}(self, batch, batch_idx, dataloader_idx=0)."
    )


def split_by_dataloader(metrics: dict[str, Any], num_loaders: int) -> list[dict[str, float]]:
    """One dict per loader: keys ending in ``/dataloader_idx_i`` go to loader i, others to all."""
    per_loader: list[dict[str, float]] = [{} for _ in range(num_loaders)]
    floats = to_float_dict(metrics)
    for key, value in floats.items():
        found = _DATALOADER_SUFFIX.search(key)
        if found is not None:
            idx = int(found.group(1))
            if idx < num_loaders:
                per_loader[idx][key] = value
        else:
            for d in per_loader:
                d[key] = value
    return per_loader
