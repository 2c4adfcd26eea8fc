"""Validation / test loop and predict loop: one pass over each eval dataloader, no gradients."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from fulmen.runtime.results import EVERY_LOADER, ResultCollection, to_float_dict

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer

_PREFIX = {"validate": "validation", "test": "test", "predict": "predict"}
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

def _grad_context(trainer: Trainer, in_fit: bool = False) -> contextlib.AbstractContextManager[Any]:
    # validation inside fit never uses inference mode: its tensors may meet training later (Lightning)
    return torch.inference_mode() if trainer.inference_mode and not in_fit else torch.no_grad()


def _capture_modes(module: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    """Every submodule's training flag, so evaluation can put back exactly what the user had."""
    return {m: m.training for m in module.modules()}


def _restore_modes(modes: dict[torch.nn.Module, bool]) -> None:
    for submodule, training in modes.items():
        submodule.training = training


def run_evaluation(
    trainer: Trainer,
    stage: str,
    loaders: list[Any],
    num_batches: list[float],
    results: ResultCollection,
    *,
    in_fit: bool,
    sanity: bool = False,
) -> list[dict[str, float]]:
    """Run ``validation``/``test`` over ``loaders``; returns one metrics dict per loader."""
    t = trainer
    prefix = _PREFIX[stage]
    module = t.lightning_module
    hooks = t._hooks
    step_fn = getattr(module, f"{prefix}_step", None)
    step_end = getattr(module, f"{prefix}_step_end", None)
    legacy_epoch_end = getattr(module, f"{prefix}_epoch_end", None)
    legacy_end = getattr(module, "validation_end", None) if stage == "validate" else None
    collect = callable(legacy_epoch_end) or callable(legacy_end)
    t._results = results
    results.reset()
    results.set_defaults(on_step=False, on_epoch=True)
    hook_prefix = "validation" if stage == "validate" else "test"
    modes = _capture_modes(module)
    t._module_hook(f"on_{hook_prefix}_model_eval")
    t._call(f"on_{prefix}_start")
    t._call(f"on_{prefix}_epoch_start")
    multiple = len(loaders) > 1
    if multiple and step_fn is not None:
        _check_takes_dataloader_idx(step_fn, f"{prefix}_step", f"{'val' if stage == 'validate' else stage}_dataloader")
    all_outputs: list[list[Any]] = []
    batch_start_cbs = hooks.callbacks(f"on_{prefix}_batch_start")
    batch_start_mod = hooks.module(f"on_{prefix}_batch_start")
    batch_end_cbs = hooks.callbacks(f"on_{prefix}_batch_end")
    batch_end_mod = hooks.module(f"on_{prefix}_batch_end")
    with _grad_context(t, in_fit):
        for dl_idx, (loader, limit) in enumerate(zip(loaders, num_batches)):
            results.dataloader_idx = dl_idx if multiple else None
            extra = (dl_idx,) if multiple else ()
            outputs: list[Any] = []
            for batch_idx, batch in limited_batches(loader, limit):
                batch = t._transfer_batch(batch, dl_idx)
                results.new_batch(batch)
                for fn in batch_start_cbs:
                    fn(t, module, batch, batch_idx, *extra)
                if batch_start_mod is not None:
                    batch_start_mod(batch, batch_idx, *extra)
                out = None
                if step_fn is not None:
                    with t.precision_plugin.forward_context():
                        out = t._eval_step(step_fn, batch, batch_idx, *extra)
                    if callable(step_end):
                        out = step_end(out)
                if collect:
                    outputs.append(out)
                for fn in batch_end_cbs:
                    fn(t, module, out, batch, batch_idx, *extra)
                if batch_end_mod is not None:
                    batch_end_mod(out, batch, batch_idx, *extra)
                if results.logged_this_batch:
                    t._publish_eval_step_metrics(results, sanity=sanity)
            all_outputs.append(outputs)
            if multiple and not sanity:
                # this loader has ended: its epoch values are published now, for every hook that
                # runs after it (Lightning; the sanity check publishes none)
                t._publish_epoch_metrics(results, log=False, loader=dl_idx)
    results.dataloader_idx = None
    if collect:
        gathered = all_outputs[0] if len(all_outputs) == 1 else all_outputs
        if callable(legacy_epoch_end):
            legacy_epoch_end(gathered)
        if callable(legacy_end):
            legacy_end(gathered)
    _run_epoch_end_hooks(t, f"on_{prefix}_epoch_end", results)
    # the sanity check shows only what was logged outside the loaders' steps (Lightning)
    metrics = t._publish_epoch_metrics(results, log=not sanity, loader=None if sanity else EVERY_LOADER)
    t._call(f"on_{prefix}_end")
    # an overridden *_model_train hook decides; otherwise every submodule gets its mode back (Lightning >= 2.2)
    train_hook = hooks.module(f"on_{hook_prefix}_model_train")
    if train_hook is not None:
        train_hook()
    else:
        _restore_modes(modes)
    return split_by_dataloader(metrics, len(loaders))


def _run_epoch_end_hooks(trainer: Trainer, name: str, results: ResultCollection) -> None:
    """The callbacks' ``name`` hooks, then the module's, each seeing the epoch's values.

    Once an eval epoch has ended, Lightning's metric dicts hold its epoch values (its
    ``epoch_end_reached``): a module or callback reading ``callback_metrics["val_loss"]`` here
    gets this epoch's value. A single loader's values, and anything logged outside the loaders'
    steps (by these hooks too), are published before each hook; several loaders' values were
    published as each loader ended. What the module's hook logs is published by the caller.
    """
    module = trainer.lightning_module
    previous, trainer._current_fx = trainer._current_fx, name
    try:
        trainer._publish_epoch_metrics(results, log=False, loader=None)
        for fn in trainer._hooks.callbacks(name):
            fn(trainer, module)
            trainer._publish_epoch_metrics(results, log=False, loader=None)
        hook = trainer._hooks.module(name)
        if hook is not None:
            hook()
    finally:
        trainer._current_fx = previous


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


def run_predict(trainer: Trainer, loaders: list[Any], num_batches: list[float], return_predictions: bool) -> Any:
    """Run ``predict_step`` over ``loaders``; predictions per loader (a flat list for one loader)."""
    t = trainer
    module = t.lightning_module
    hooks = t._hooks
    modes = _capture_modes(module)  # restored at the end (Lightning >= 2.2)
    t._module_hook("on_predict_model_eval")
    t._call("on_predict_start")
    t._call("on_predict_epoch_start")
    multiple = len(loaders) > 1
    all_predictions: list[list[Any]] = []
    with _grad_context(t):
        for dl_idx, (loader, limit) in enumerate(zip(loaders, num_batches)):
            extra = (dl_idx,) if multiple else ()
            predictions: list[Any] = []
            for batch_idx, batch in limited_batches(loader, limit):
                batch = t._transfer_batch(batch, dl_idx)
                for fn in hooks.callbacks("on_predict_batch_start"):
                    fn(t, module, batch, batch_idx, *extra)
                hook = hooks.module("on_predict_batch_start")
                if hook is not None:
                    hook(batch, batch_idx, *extra)
                with t.precision_plugin.forward_context():
                    out = t._eval_step(module.predict_step, batch, batch_idx, *extra)
                if return_predictions:
                    predictions.append(out)
                for fn in hooks.callbacks("on_predict_batch_end"):
                    fn(t, module, out, batch, batch_idx, *extra)
                hook = hooks.module("on_predict_batch_end")
                if hook is not None:
                    hook(out, batch, batch_idx, *extra)
            all_predictions.append(predictions)
    t._call("on_predict_epoch_end")
    t._call("on_predict_end")
    _restore_modes(modes)
    if not return_predictions:
        return None
    return all_predictions[0] if len(all_predictions) == 1 else all_predictions
