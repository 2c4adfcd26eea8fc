"""Trainer flags of Lightning 0.x-1.x that Lightning 2 dropped, and what each becomes in fulmen.

Scripts from that era run unchanged: each flag turns into its modern setting with one
DeprecationWarning that names the modern spelling, or fails with a clear error where fulmen
has no counterpart (TPUs, IPUs); ``auto_lr_find`` /
``auto_scale_batch_size`` run the tuner from ``trainer.tune(model)`` (``legacy_tune``). Plain renames live in
``trainer_flags._LEGACY_RENAMES``; the flags here need a rule because their value changes
meaning on the way. Each rule is ``rule(value, flags, extras)``: it writes modern flags into
``flags`` and callbacks into ``extras["extra_callbacks"]`` (see ``translate_legacy_flags``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fulmen.core.datamodule import LightningDataModule
from fulmen.errors import MisconfigurationException

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

LegacyRule = Callable[[Any, dict[str, Any], dict[str, Any]], None]
_OFF = (None, False, 0, "", [])


def warn_legacy(old: str, new: str | None, note: str = "") -> None:
    """The one warning a legacy flag gives, at the user's Trainer(...) line: its modern spelling
    (``new``), or, for a flag that does nothing here (``new=None``), why (``note``)."""
    if new is None:
        text = f"Trainer({old}=...) is a legacy flag from older Lightning versions and has no effect in fulmen: {note}"
    else:
        text = f"Trainer({old}=...) is a legacy flag from older Lightning versions; use {new} instead." + (
            f" {note}" if note else ""
        )
    warnings.warn(
        text,
        DeprecationWarning,
        stacklevel=6,  # the user's Trainer(...) line: warn_legacy <- rule <- translate <- normalize <- __init__
    )


def _no_effect(old: str, why: str) -> LegacyRule:
    def rule(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
        warn_legacy(old, None, why)

    return rule


def _unsupported(old: str, what: str, hint: str) -> LegacyRule:
    """Off values are accepted with a warning; anything else is an error naming what to use."""

    def rule(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
        if value in _OFF:
            warn_legacy(old, None, f"fulmen has no {what}; the flag is off, so drop it.")
            return
        raise MisconfigurationException(
            f"Trainer({old}={value!r}) asks for {what}, which fulmen does not support.\nHINT: {hint}"
        )

    return rule


def _weights_summary(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    depths = {"top": 1, "full": -1}
    if value is None:
        warn_legacy("weights_summary", "enable_model_summary=False")
        flags["enable_model_summary"] = False
        return
    if value not in depths:
        raise MisconfigurationException(
            f"Trainer(weights_summary={value!r}) is not a summary mode; expected 'top', 'full' or None.\n"
            "HINT: use callbacks=[ModelSummary(max_depth=1)] ('top') or ModelSummary(max_depth=-1) ('full')."
        )
    warn_legacy("weights_summary", f"callbacks=[ModelSummary(max_depth={depths[value]})]")
    from fulmen.callbacks.model_summary import ModelSummary

    extras["extra_callbacks"].append(ModelSummary(max_depth=depths[value]))


def _process_position(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    warn_legacy("process_position", f"callbacks=[TQDMProgressBar(process_position={value!r})]")
    if value and flags["enable_progress_bar"] is not False:
        from fulmen.callbacks.progress import TQDMProgressBar

        extras["extra_callbacks"].append(TQDMProgressBar(process_position=int(value)))


def _use_amp(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    warn_legacy("use_amp", "precision='16-mixed'")
    if value:
        flags["precision"] = "16-mixed"


def _amp_backend(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    if value == "apex":
        warn_legacy(
            "amp_backend",
            "precision='16-mixed'",
            "apex is not supported: mixed precision runs as torch's native AMP; apex's O2/O3 half-precision "
            "master weights are not reproduced.",
        )
    elif value in (None, "native"):
        warn_legacy("amp_backend", "precision='16-mixed'", "Native AMP is the only backend.")
    else:
        raise MisconfigurationException(
            f"Trainer(amp_backend={value!r}) is not an AMP backend; expected 'native' or 'apex'.\n"
            "HINT: drop amp_backend and pass precision='16-mixed' (or 'bf16-mixed')."
        )


def _amp_level(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    warn_legacy("amp_level", None, "it was apex's optimisation level; mixed precision is precision='16-mixed'.")


def _distributed_backend(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    if value in ("dp", "ddp2"):
        warn_legacy(
            "distributed_backend",
            "strategy='ddp'",
            f"DataParallel ({value!r}) is gone: this run uses DDP over the same devices, one process per device, "
            "each taking whole batches of its own loader shard (the global batch is devices x batch_size, not "
            "batch_size split across devices); divide batch_size by the device count to keep 1.x's batch.",
        )
        flags["strategy"] = "ddp"
    elif value == "ddp_cpu":
        warn_legacy("distributed_backend", "strategy='ddp', accelerator='cpu'")
        flags["strategy"], flags["accelerator"] = "ddp", "cpu"
    else:
        warn_legacy("distributed_backend", f"strategy={value!r}")
        if value is not None:
            flags["strategy"] = value


def _stochastic_weight_avg(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
    """1.3-1.6: ``True`` added ``StochasticWeightAveraging()`` (its defaults then: SWA from 80% of
    the epochs at the optimizer's own learning rates) unless the callbacks held one already."""
    warn_legacy("stochastic_weight_avg", "callbacks=[StochasticWeightAveraging(swa_lrs=...)]")
    if not value:
        return
    from fulmen.callbacks.stochastic_weight_avg import StochasticWeightAveraging

    given = flags.get("callbacks") or []
    given = given if isinstance(given, (list, tuple)) else [given]
    if not any(isinstance(callback, StochasticWeightAveraging) for callback in given):
        extras["extra_callbacks"].append(StochasticWeightAveraging.at_optimizer_lrs())


_MODERN_TUNING = {
    "auto_lr_find": "Tuner(trainer).lr_find(model) (from fulmen.tuner import Tuner)",
    "auto_scale_batch_size": "Tuner(trainer).scale_batch_size(model) (from fulmen.tuner import Tuner)",
}


def _tuning(old: str) -> LegacyRule:
    def rule(value: Any, flags: dict[str, Any], extras: dict[str, Any]) -> None:
        if value not in _OFF:
            warn_legacy(old, _MODERN_TUNING[old], "trainer.tune(model) runs it as Lightning 1.x did.")
        else:
            warn_legacy(old, None, "it is off, and trainer.tune(model) does nothing.")
        extras.setdefault("tuning", {})[old] = value

    return rule


LEGACY_RULES: dict[str, LegacyRule] = {
    "log_save_interval": _no_effect(
        "log_save_interval",
        "loggers flush on their own; set TensorBoardLogger(flush_secs=...) or "
        "CSVLogger(flush_logs_every_n_steps=...) instead.",
    ),
    "weights_summary": _weights_summary,
    "process_position": _process_position,
    "use_amp": _use_amp,
    "amp_backend": _amp_backend,
    "amp_level": _amp_level,
    "distributed_backend": _distributed_backend,
    "stochastic_weight_avg": _stochastic_weight_avg,
    "tpu_cores": _unsupported("tpu_cores", "TPUs", "fulmen trains on CPUs and CUDA GPUs: use accelerator='gpu', devices=N."),
    "ipus": _unsupported("ipus", "Graphcore IPUs", "fulmen trains on CPUs and CUDA GPUs: use accelerator='gpu', devices=N."),
    "auto_lr_find": _tuning("auto_lr_find"),
    "auto_scale_batch_size": _tuning("auto_scale_batch_size"),
}


def legacy_tune(
    trainer: Trainer,
    model: LightningModule,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    dataloaders: Any = None,
    datamodule: Any = None,
    scale_batch_size_kwargs: dict[str, Any] | None = None,
    lr_find_kwargs: dict[str, Any] | None = None,
    method: str = "fit",
) -> dict[str, Any]:
    """Lightning 1.x's ``trainer.tune(model)``: the batch-size scaler when ``auto_scale_batch_size``
    is on (its mode when a string), then the learning-rate finder when ``auto_lr_find`` is on
    (writing the suggestion to ``lr``/``learning_rate``, or to the attribute the string names).

    The binsearch keeps the size it found, as 1.9.5 did (2.x's ``margin`` defaults to 0 here).
    Returns 1.9.5's result dict: ``"scale_batch_size"`` (the size) and/or ``"lr_find"`` (the
    finder) for what ran; ``{}`` with both flags off. The global RNG states are untouched.
    """
    from fulmen.tuner.tuning import Tuner  # the 1.x flags are rare: the tuner loads only for them
    from fulmen.utilities.seed import isolate_rng

    tuning = trainer._legacy_tuning
    scale, find = tuning.get("auto_scale_batch_size"), tuning.get("auto_lr_find")
    result: dict[str, Any] = {}
    if isinstance(train_dataloaders, LightningDataModule):
        datamodule, train_dataloaders = train_dataloaders, None
    tuner = Tuner(trainer)
    with isolate_rng():
        if scale not in _OFF:
            if trainer.strategy.world_size > 1:
                raise MisconfigurationException(
                    "`trainer.tune()` is currently not supported with a distributed strategy (the batch-size "
                    f"scaler runs on one process; this run has {trainer.strategy.world_size}).\n"
                    "HINT: tune in a single-process run, then train with the batch size it found."
                )
            kwargs = dict(scale_batch_size_kwargs or {})
            kwargs.setdefault("margin", 0.0)  # 1.9.5's binsearch kept the size it found (2.x takes 5% off)
            if isinstance(scale, str):
                kwargs.setdefault("mode", scale)
            result["scale_batch_size"] = tuner.scale_batch_size(
                model, train_dataloaders, val_dataloaders, dataloaders, datamodule, method, **kwargs
            )
        if find not in _OFF:
            kwargs = dict(lr_find_kwargs or {})
            kwargs.setdefault("update_attr", True)
            if isinstance(find, str):
                kwargs.setdefault("attr_name", find)
            result["lr_find"] = tuner.lr_find(
                model, train_dataloaders, val_dataloaders, dataloaders, datamodule, method, **kwargs
            )
    return result


def schedule_accumulation(flags: dict[str, Any], extras: dict[str, Any]) -> None:
    """``accumulate_grad_batches={epoch: factor}`` (Lightning 1.x) becomes a GradientAccumulationScheduler.

    As in 1.9.5, the Trainer's own factor starts at 1 and the callback sets it at each epoch start.
    """
    schedule = flags["accumulate_grad_batches"]
    if not isinstance(schedule, dict):
        return
    warnings.warn(
        f"Trainer(accumulate_grad_batches={schedule!r}) is a legacy spelling from older Lightning versions; use "
        f"callbacks=[GradientAccumulationScheduler({schedule!r})] instead.",
        DeprecationWarning,
        stacklevel=4,
    )
    from fulmen.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler

    extras["extra_callbacks"].append(GradientAccumulationScheduler(schedule))
    flags["accumulate_grad_batches"] = 1
