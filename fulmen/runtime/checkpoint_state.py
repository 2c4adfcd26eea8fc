"""Trainer state <-> checkpoint dict, in Lightning's key layout.

``dump_checkpoint`` builds the dict that ``trainer.save_checkpoint`` writes;
``restore_checkpoint`` puts one back. Both use only the trainer accessors listed in
docs/internals.md ("Trainer <-> checkpoints"), so the Trainer stays free of checkpoint
details and this module free of loop details.

Keys (Lightning's names, plus ours):

- always: ``epoch``, ``global_step``, ``fulmen_version``, ``pytorch-lightning_version`` (the
  Lightning layout followed, see ``checkpoint_lightning``), ``state_dict`` (the
  LightningModule's own, never a DDP wrapper's ``module.`` prefix), ``loops``
  (Lightning's four loops with their progress counters; ``trainer.fit_loop.state_dict()`` under
  ``loops["fit_loop"]["state_dict"]["fulmen"]``),
  ``hyper_parameters`` + ``hparams_name`` and ``datamodule_hyper_parameters`` when set, the
  datamodule's ``state_dict()`` under its class name (as Lightning does);
- unless ``weights_only``: ``callbacks`` (``{state_key: state}``), ``optimizer_states``,
  ``lr_schedulers``, ``precision`` (GradScaler state, when there is one), ``loggers``;
- then whatever the callbacks', module's and datamodule's ``on_save_checkpoint`` add.

Everything is kept loadable by ``torch.load(weights_only=True)``: numpy arrays (numpy's RNG
state) are stored as tensors with their dtype name and turned back on restore.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from fulmen.errors import CheckpointError
from fulmen.runtime import checkpoint as ckpt_io
from fulmen.runtime.checkpoint_hparams import decode_checkpoint_hparams, encode_hparams, opaque_hparams
from fulmen.runtime.checkpoint_lightning import (
    FULMEN_LOOP_KEY,
    LIGHTNING_LAYOUT_VERSION,
    fit_state_from_lightning,
    lightning_eval_loops,
    lightning_fit_progress,
    scheduler_counts,
    validation_plan,
)
from fulmen.runtime.ranks import RankInfo
from fulmen.runtime.strategy import SingleDeviceStrategy, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer

_NDARRAY_TAG = "__fulmen_ndarray__"
TRAINING_STATE_KEYS = ("optimizer_states", "lr_schedulers")


def _fulmen_version() -> str:
    import fulmen

    return fulmen.__version__


def encode_arrays(obj: Any) -> Any:
    """Replace numpy arrays inside ``obj`` by tagged tensors (safe for ``weights_only`` loading)."""
    if isinstance(obj, dict):
        return {key: encode_arrays(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [encode_arrays(value) for value in obj]
        return items if isinstance(obj, list) else tuple(items)
    module = type(obj).__module__
    if module.startswith("numpy"):
        import numpy as np

        if isinstance(obj, np.ndarray):
            return {_NDARRAY_TAG: torch.from_numpy(obj.astype(np.int64) if obj.dtype.kind == "u" else obj.copy()),
                    "dtype": obj.dtype.str}
        if isinstance(obj, np.generic):  # numpy scalar: its python value
            return obj.item()
    return obj


def decode_arrays(obj: Any) -> Any:
    """Undo ``encode_arrays``."""
    if isinstance(obj, dict):
        if _NDARRAY_TAG in obj:
            import numpy as np

            return obj[_NDARRAY_TAG].numpy().astype(np.dtype(obj["dtype"]))
        return {key: decode_arrays(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [decode_arrays(value) for value in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


_warned_opaque: set[str] = set()


def _plain_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    # Lightning stores dict(hparams): a plain dict, never the AttributeDict subclass; Namespaces,
    # dataclasses, enums and paths inside become tagged plain data, so the file loads safely
    encoded = encode_hparams(dict(hparams))
    opaque = [line for line in opaque_hparams(encoded) if line not in _warned_opaque]
    if opaque:
        _warned_opaque.update(opaque)
        from fulmen.utilities.rank_zero import rank_zero_warn

        rank_zero_warn(
            "Checkpoints will hold hyperparameters that the safe loader (torch.load(weights_only=True)) "
            f"refuses: {'; '.join(opaque)}. Loading such a file, resuming from it included, needs the "
            "full unpickler.\nHINT: keep hyperparameters to numbers, strings, containers, Namespaces, "
            "dataclasses, enums and paths, or load with trainer.fit(..., unsafe_full_unpickle=True) / "
            "Model.load_from_checkpoint(path, unsafe_full_unpickle=True) (trusted files only)."
        )
    return encoded


def _fit_loop_entry(trainer: Trainer, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Lightning's progress counters (so Lightning can resume the file), with our own loop state
    in the fit loop's ``state_dict`` (where Lightning's FitLoop keeps its own extras; it reads
    only the keys it knows from there). ``state``: the fit loop's state to store (default: now)."""
    state = trainer.fit_loop.state_dict() if state is None else state
    automatic = bool(getattr(trainer.lightning_module, "automatic_optimization", True))
    num_batches = getattr(trainer, "num_training_batches", float("inf"))
    entry = lightning_fit_progress(
        state,
        num_batches if num_batches else float("inf"),
        automatic,
        schedulers=scheduler_counts(trainer, automatic),
        validation=validation_plan(trainer),
    )
    entry["state_dict"][FULMEN_LOOP_KEY] = encode_arrays(state)
    return entry


def _fit_loop_state(trainer: Trainer, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Our fit loop state from a fulmen checkpoint, or translated from a Lightning one."""
    entry = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    ours = (entry.get("state_dict") or {}).get(FULMEN_LOOP_KEY, entry.get(FULMEN_LOOP_KEY))
    if ours is not None:  # loops.fit_loop.state_dict.fulmen; loops.fit_loop.fulmen in older files
        return decode_arrays(ours)
    if "fulmen_version" in checkpoint and "epoch_progress" not in entry:  # files from before the counters
        return decode_arrays(entry)
    from fulmen.utilities.seed import capture_rng_states

    return fit_state_from_lightning(dict(checkpoint), capture_rng_states(), len(list(trainer.optimizers)))


def dump_checkpoint(
    trainer: Trainer, weights_only: bool = False, loop_state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The checkpoint dict of ``trainer`` now (tensors are shared, not copied).

    ``loop_state``: the fit loop's state taken earlier, at the step boundary the rest of the
    state still equals (``hang_rescue``); its epoch and step are the checkpoint's.
    """
    module = trainer.lightning_module
    datamodule = getattr(trainer, "datamodule", None)
    checkpoint: dict[str, Any] = {
        "epoch": trainer.current_epoch if loop_state is None else loop_state["epoch"],
        "global_step": trainer.global_step if loop_state is None else loop_state["global_step"],
        "fulmen_version": _fulmen_version(),
        "state_dict": _strategy(trainer).module_state_dict(module),
        "loops": {"fit_loop": _fit_loop_entry(trainer, loop_state), **lightning_eval_loops()},
        "pytorch-lightning_version": LIGHTNING_LAYOUT_VERSION,
    }
    if not weights_only:
        callback_states = {}
        for callback in trainer.callbacks:
            state = callback.state_dict()
            if state:  # Lightning stores only non-empty states
                callback_states[callback.state_key] = state
        checkpoint["callbacks"] = callback_states
        checkpoint["optimizer_states"] = [_strategy(trainer).optimizer_state(optimizer) for optimizer in trainer.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        precision_state = trainer.precision_plugin.state_dict()
        if precision_state:
            checkpoint["precision"] = precision_state
        checkpoint["loggers"] = [logger.state_dict() for logger in trainer.loggers if hasattr(logger, "state_dict")]
    if module.hparams:
        checkpoint["hparams_name"] = getattr(module, "_hparams_name", "kwargs")
        checkpoint["hyper_parameters"] = _plain_hparams(module.hparams)
    if datamodule is not None:
        if datamodule.hparams:
            checkpoint["datamodule_hparams_name"] = getattr(datamodule, "_hparams_name", "kwargs")
            checkpoint["datamodule_hyper_parameters"] = _plain_hparams(datamodule.hparams)
        datamodule_state = datamodule.state_dict()
        if datamodule_state:
            checkpoint[type(datamodule).__qualname__] = datamodule_state
    if not weights_only:
        for callback in trainer.callbacks:
            callback.on_save_checkpoint(trainer, module, checkpoint)
    module.on_save_checkpoint(checkpoint)
    if datamodule is not None and hasattr(datamodule, "on_save_checkpoint"):
        datamodule.on_save_checkpoint(checkpoint)
    return checkpoint


def _strategy(trainer: Trainer) -> Strategy:
    """Where weights and optimizer states are read and written (a sharding strategy gathers)."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is None:  # a trainer-like object without one (tests, tools): plain state dicts
        return SingleDeviceStrategy(RankInfo(), torch.device("cpu"))
    return strategy


def _trainer_fn(trainer: Trainer) -> str:
    fn = getattr(getattr(trainer, "state", None), "fn", "fit")
    return str(getattr(fn, "value", fn))


def restore_checkpoint(trainer: Trainer, checkpoint: dict[str, Any], source: str | os.PathLike[str] | None = None) -> None:
    """Put ``checkpoint`` back into ``trainer``: weights always; while fitting, training state too.

    Both phases of Lightning's restore in one call, for a trainer whose optimizers already
    exist. A Trainer that follows Lightning's hook order calls ``restore_modules_and_callbacks``
    before ``configure_optimizers`` and ``restore_training_state`` after it.
    """
    restore_modules_and_callbacks(trainer, checkpoint, source)
    restore_training_state(trainer, checkpoint, source)


def restore_modules_and_callbacks(
    trainer: Trainer, checkpoint: dict[str, Any], source: str | os.PathLike[str] | None = None
) -> None:
    """Lightning's first restore phase: module (``on_load_checkpoint``, then weights), datamodule,
    and while fitting the loggers (a resumed run keeps its ``version_N``, and callbacks that
    derive their folder from it see the right one) and callbacks (every ``on_load_checkpoint``,
    then every ``load_state_dict``).

    A checkpoint without optimizer states (``save_weights_only=True``) cannot resume a fit:
    that is a ``CheckpointError`` naming ``source`` (default: ``trainer.ckpt_path``), raised
    before anything is changed.
    """
    module = trainer.lightning_module
    datamodule = getattr(trainer, "datamodule", None)
    source = _source(trainer, source)
    fitting = _trainer_fn(trainer) == "fit"
    ckpt_io.require_keys(checkpoint, ("state_dict",), source, "restore the model")
    if fitting:
        ckpt_io.require_keys(checkpoint, TRAINING_STATE_KEYS, source, "resume training")
    decode_checkpoint_hparams(checkpoint)  # hooks see the Namespaces / dataclasses that were saved
    module.on_load_checkpoint(checkpoint)
    _strategy(trainer).load_module_state_dict(module, checkpoint["state_dict"], getattr(module, "strict_loading", True))
    if datamodule is not None:
        if hasattr(datamodule, "on_load_checkpoint"):
            datamodule.on_load_checkpoint(checkpoint)
        # Lightning stores it under the class name; "datamodule" is accepted as well
        state = checkpoint.get(type(datamodule).__qualname__, checkpoint.get("datamodule"))
        if state:
            datamodule.load_state_dict(state)
    if fitting:
        restore_loggers(trainer, checkpoint)
        restore_callbacks(trainer, checkpoint)


def restore_training_state(
    trainer: Trainer, checkpoint: dict[str, Any], source: str | os.PathLike[str] | None = None
) -> None:
    """Lightning's second phase, fit only, once the optimizers exist: precision (GradScaler),
    loop progress, optimizer and scheduler states."""
    if _trainer_fn(trainer) != "fit":
        return
    source = _source(trainer, source)
    ckpt_io.require_keys(checkpoint, TRAINING_STATE_KEYS, source, "resume training")
    if "precision" in checkpoint:
        trainer.precision_plugin.load_state_dict(checkpoint["precision"])
    trainer.fit_loop.load_state_dict(_fit_loop_state(trainer, checkpoint))
    _restore_optimizers(trainer, checkpoint, source)


def _source(trainer: Trainer, source: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    return source or getattr(trainer, "ckpt_path", None) or "<the checkpoint being restored>"


def restore_callbacks(trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
    """Every callback's ``on_load_checkpoint``, then each one's state stored under its ``state_key``.

    Like Lightning, a state saved under the bare class name (older files, or a callback whose
    key arguments changed) is used when the full key is absent.
    """
    module = trainer.lightning_module
    states = checkpoint.get("callbacks") or {}
    for callback in trainer.callbacks:
        callback.on_load_checkpoint(trainer, module, dict(checkpoint))
    for callback in trainer.callbacks:
        state = states.get(callback.state_key, states.get(type(callback).__qualname__))
        if state:
            callback.load_state_dict(dict(state))


def _restore_optimizers(trainer: Trainer, checkpoint: Mapping[str, Any], source: Any) -> None:
    optimizers = list(trainer.optimizers)
    saved = checkpoint["optimizer_states"]
    if len(saved) != len(optimizers):
        raise CheckpointError(
            f"Checkpoint {str(source)!r} holds {len(saved)} optimizer state(s), but configure_optimizers "
            f"returned {len(optimizers)} optimizer(s).\nHINT: resume with the same configure_optimizers "
            "as the run that saved it, or load only the weights with load_from_checkpoint."
        )
    for optimizer, state in zip(optimizers, saved):
        _strategy(trainer).load_optimizer_state(optimizer, state)
    configs = list(trainer.lr_scheduler_configs)
    saved_schedulers = checkpoint["lr_schedulers"]
    if len(saved_schedulers) != len(configs):
        raise CheckpointError(
            f"Checkpoint {str(source)!r} holds {len(saved_schedulers)} scheduler state(s), but "
            f"configure_optimizers returned {len(configs)} scheduler(s).\nHINT: resume with the same "
            "configure_optimizers as the run that saved it."
        )
    for config, state in zip(configs, saved_schedulers):
        config.scheduler.load_state_dict(state)


def restore_loggers(trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
    """Give each logger its saved state (its version), so a resumed run logs into the same folder."""
    for logger, state in zip(trainer.loggers, checkpoint.get("loggers") or []):
        if hasattr(logger, "load_state_dict"):
            logger.load_state_dict(state)
