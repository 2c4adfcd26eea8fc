"""Trainer flags: legacy names, validation, and the pure conversions behind them."""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Mapping
from typing import Any

from fulmen.errors import MisconfigurationException, UnknownFlagError, close_matches
from fulmen.runtime.legacy_flags import LEGACY_RULES, schedule_accumulation

# legacy flag -> (new spelling shown in the warning, translation into new flags)
_LEGACY_RENAMES = {
    "nb_gpu_nodes": "num_nodes",
    "max_nb_epochs": "max_epochs",
    "min_nb_epochs": "min_epochs",
    "gradient_clip": "gradient_clip_val",
    "train_percent_check": "limit_train_batches",
    "val_percent_check": "limit_val_batches",
    "test_percent_check": "limit_test_batches",
    "overfit_pct": "overfit_batches",
    "show_progress_bar": "enable_progress_bar",
    "print_nan_grads": "detect_anomaly",
    "default_save_path": "default_root_dir",
    "nb_sanity_val_steps": "num_sanity_val_steps",
    "replace_sampler_ddp": "use_distributed_sampler",
    "row_log_interval": "log_every_n_steps",
    "add_log_row_interval": "log_every_n_steps",
}
LEGACY_FLAGS = (*_LEGACY_RENAMES, *LEGACY_RULES, "gpus", "resume_from_checkpoint", "track_grad_norm", "checkpoint_callback",
                "early_stop_callback", "experiment")  # fmt: skip


def _warn_legacy(old: str, new: str) -> None:
    warnings.warn(
        f"Trainer({old}=...) is a legacy flag from older Lightning versions; use {new} instead.",
        DeprecationWarning,
        stacklevel=5,  # the user's Trainer(...) line (4 was Trainer.__init__, hidden outside __main__)
    )


def translate_legacy_flags(flags: dict[str, Any], legacy: Mapping[str, Any], known: list[str]) -> dict[str, Any]:
    """Apply legacy flags onto ``flags`` (new names), warning for each; unknown names are errors.

    Returns the extras the Trainer handles itself: ``resume_from_checkpoint``,
    ``track_grad_norm``, ``extra_callbacks``, ``tuning`` (``legacy_flags``).
    """
    extras: dict[str, Any] = {"extra_callbacks": []}
    for old, value in legacy.items():
        if old in LEGACY_RULES:
            LEGACY_RULES[old](value, flags, extras)
        elif old in _LEGACY_RENAMES:
            new = _LEGACY_RENAMES[old]
            _warn_legacy(old, new)
            flags[new] = value
        elif old == "gpus":
            _warn_legacy("gpus", "accelerator='gpu', devices=N")
            if value not in (None, 0, [], "0", ""):
                flags["accelerator"] = "gpu"
                flags["devices"] = value
        elif old == "resume_from_checkpoint":
            _warn_legacy(old, "trainer.fit(model, ckpt_path=...)")
            extras["resume_from_checkpoint"] = value
        elif old == "track_grad_norm":
            _warn_legacy(old, "a callback that logs torch.nn.utils.get_total_norm in on_before_optimizer_step")
            extras["track_grad_norm"] = value
        elif old == "checkpoint_callback":
            _warn_legacy(old, "enable_checkpointing (bool) or callbacks=[ModelCheckpoint(...)]")
            if isinstance(value, bool):
                flags["enable_checkpointing"] = value
            elif value is not None:
                extras["extra_callbacks"].append(value)
        elif old == "early_stop_callback":
            _warn_legacy(old, "callbacks=[EarlyStopping(monitor=...)]")
            if value is True:
                from fulmen.callbacks.early_stopping import EarlyStopping

                extras["extra_callbacks"].append(EarlyStopping(monitor="val_loss"))
            elif value not in (None, False):
                extras["extra_callbacks"].append(value)
        elif old == "experiment":
            _warn_legacy(old, "logger=TensorBoardLogger(save_dir, name, version)")
            _translate_experiment(flags, extras, value)
        else:
            raise UnknownFlagError(
                f"Trainer() got an unknown flag {old!r}."
                + close_matches(old, [*known, *LEGACY_FLAGS])
                + f"\nHINT: the Trainer's flags are: {', '.join(known)}."
            )
    return extras


def _translate_experiment(flags: dict[str, Any], extras: dict[str, Any], experiment: Any) -> None:
    """``experiment=<test_tube Experiment>``: log through it, and continue its version's last checkpoint."""
    if experiment is None:
        return
    if flags.get("logger") not in (None, True):
        raise MisconfigurationException(
            "Trainer(experiment=...) and Trainer(logger=...) were both given; the experiment is the logger.\n"
            "HINT: pass only one of them."
        )
    from fulmen.loggers.test_tube import ExperimentLogger

    logger = ExperimentLogger(experiment)
    flags["logger"] = logger
    extras.setdefault("resume_from_checkpoint", logger.last_checkpoint())


def parse_max_time(value: Any) -> datetime.timedelta | None:
    """``max_time`` as a timedelta: "DD:HH:MM:SS", a dict of timedelta fields, or a timedelta."""
    if value is None or isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, Mapping):
        return datetime.timedelta(**value)
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 4 and all(p.strip().isdigit() for p in parts):
            days, hours, minutes, seconds = map(int, parts)
            return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise MisconfigurationException(
        f"Trainer(max_time={value!r}) is not understood; expected 'DD:HH:MM:SS', a dict like "
        "{'hours': 1}, or a datetime.timedelta."
    )


def check_limit(name: str, value: Any) -> int | float:
    """A limit_*/overfit_batches value: int >= 0 (batches) or float in [0, 1] (fraction)."""
    if isinstance(value, bool):
        raise MisconfigurationException(f"Trainer({name}={value!r}): expected an int >= 0 or a float in [0, 1].")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return value
    raise MisconfigurationException(
        f"Trainer({name}={value!r}) is out of range; expected an int >= 0 (number of batches) "
        "or a float in [0.0, 1.0] (fraction of the loader)."
    )


def limited_batches(length: float, limit: int | float, name: str) -> float:
    """How many batches a loader of ``length`` yields under ``limit`` (inf for unknown length)."""
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(length, limit)
    if length == float("inf"):
        if limit in (0.0, 1.0):
            return 0 if limit == 0.0 else length
        raise MisconfigurationException(
            f"Trainer({name}={limit}) is a fraction, but the dataloader has no length.\n"
            f"HINT: use an int {name} (a number of batches) for iterable datasets."
        )
    count = int(length * limit)
    if length == 0:
        return 0  # an empty loader: the loops say "no batches", as Lightning does, not an error here
    if limit > 0 and count == 0:
        raise MisconfigurationException(
            f"Trainer({name}={limit}) selects 0 of the loader's {int(length)} batches.\n"
            f"HINT: raise {name} to at least {1 / length:.3g}, or use an int number of batches."
        )
    return count


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int_flag(name: str, value: Any, *, minimum: int, optional: bool, meaning: str) -> None:
    """``value`` must be an int >= ``minimum`` (or None when ``optional``); else a clear error."""
    if (optional and value is None) or (_is_int(value) and value >= minimum):
        return
    expected = f"an int >= {minimum}" + (" or None" if optional else "") + f" ({meaning})"
    seen = f"a {type(value).__name__}" if not _is_int(value) else "out of range"
    raise MisconfigurationException(
        f"Trainer({name}={value!r}) is {seen}; expected {expected}.\n"
        f"HINT: pass {name} as a number, e.g. {name}={max(minimum, 1)}"
        + (" (convert strings from a config or the command line with int(...))." if isinstance(value, str) else ".")
    )


def check_devices(devices: Any, num_nodes: Any) -> None:
    """``devices`` and ``num_nodes`` as Lightning accepts them, refused at ``Trainer()`` time.

    devices: "auto", an int >= 1, -1 (every visible device), a list of device indices, or the
    string forms of those ("2", "-1", "0,1"). num_nodes: None (the launch's value) or an int >= 1.
    Without this, ``devices=-3`` was taken as "one device" and ``devices=0`` as a no-op.
    """
    _check_int_flag("num_nodes", num_nodes, minimum=1, optional=True, meaning="machines taking part")
    if devices in (None, "auto") or (_is_int(devices) and (devices >= 1 or devices == -1)):
        return
    if isinstance(devices, str):
        text = devices.strip()
        parts = [p.strip() for p in text.split(",") if p.strip()] if "," in text else [text]
        if text == "-1" or (parts and all(p.isdigit() for p in parts) and ("," in text or int(text) >= 1)):
            return
    if isinstance(devices, (list, tuple)) and devices and all(_is_int(d) and d >= 0 for d in devices):
        return
    raise MisconfigurationException(
        f"Trainer(devices={devices!r}) is not a device selection; expected 'auto', an int >= 1 "
        "(that many devices), -1 (every visible device) or a list of device indices like [0, 1].\n"
        "HINT: leave devices='auto' to take what the launcher started, or give a positive count."
    )


def check_loop_limits(flags: dict[str, Any]) -> None:
    """``max_epochs`` / ``min_epochs`` / ``max_steps`` / ``min_steps`` as Lightning accepts them.

    Checked at ``Trainer()`` time: a string (``max_epochs="ten"`` from a config file) used to
    fail with a bare TypeError inside the fit loop, and ``max_steps=-2`` ran without a limit.
    """
    _check_int_flag("max_epochs", flags["max_epochs"], minimum=-1, optional=True, meaning="-1: no epoch limit")
    _check_int_flag("min_epochs", flags["min_epochs"], minimum=0, optional=True, meaning="epochs to run at least")
    _check_int_flag("max_steps", flags["max_steps"], minimum=-1, optional=False, meaning="-1: no step limit")
    _check_int_flag("min_steps", flags["min_steps"], minimum=0, optional=True, meaning="steps to run at least")


def check_flags(flags: dict[str, Any]) -> None:
    """Errors for flag values that cannot work, raised at Trainer construction."""
    check_devices(flags["devices"], flags["num_nodes"])
    check_loop_limits(flags)
    if flags["gradient_clip_algorithm"] not in (None, "norm", "value"):
        algo = flags["gradient_clip_algorithm"]
        raise MisconfigurationException(
            f"Trainer(gradient_clip_algorithm={algo!r}): expected 'norm' or 'value'."
            + close_matches(str(algo), ("norm", "value"))
        )
    accumulate = flags["accumulate_grad_batches"]
    if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
        raise MisconfigurationException(
            f"Trainer(accumulate_grad_batches={accumulate!r}): expected an int >= 1."
        )
    n = flags["check_val_every_n_epoch"]
    if n is not None and (not isinstance(n, int) or n < 1):
        raise MisconfigurationException(f"Trainer(check_val_every_n_epoch={n!r}): expected an int >= 1 or None.")
    vci = flags["val_check_interval"]
    if isinstance(vci, float) and not 0.0 < vci <= 1.0:
        raise MisconfigurationException(
            f"Trainer(val_check_interval={vci}) must be in (0.0, 1.0] as a fraction of an epoch, "
            "or an int number of batches."
        )
    if isinstance(vci, int) and vci < 1:
        raise MisconfigurationException(f"Trainer(val_check_interval={vci}): an int must be >= 1.")
    if flags["log_every_n_steps"] < 1:
        raise MisconfigurationException(
            f"Trainer(log_every_n_steps={flags['log_every_n_steps']}): expected an int >= 1."
        )
    fdr = flags["fast_dev_run"]
    if (isinstance(fdr, int) and not isinstance(fdr, bool) and fdr < 0) or not isinstance(fdr, (int, bool)):
        raise MisconfigurationException(f"Trainer(fast_dev_run={fdr!r}): expected a bool or an int >= 0.")


# Trainer(barebones=True): the features it turns off, each refused when asked for (Lightning 2.6's checks)
_BAREBONES_OFF: tuple[tuple[str, str], ...] = (
    ("enable_checkpointing", "Checkpointing"),
    ("logger", "Logging"),
    ("enable_progress_bar", "The progress bar"),
    ("log_every_n_steps", "Logging"),
    ("enable_model_summary", "Model summary"),
    ("num_sanity_val_steps", "Sanity checking"),
    ("fast_dev_run", "Development run"),
    ("detect_anomaly", "Anomaly detection"),
    ("profiler", "Profiling"),
)


def _barebones_conflict(name: str, value: Any) -> bool:
    if name == "logger":
        return value is not None and value is not False
    if name == "profiler":
        return value is not None
    if name in ("log_every_n_steps", "num_sanity_val_steps"):
        return value is not None and value != 0
    return bool(value)


def apply_barebones(flags: dict[str, Any]) -> None:
    """Lightning's ``barebones=True``: nothing but the loops, so that the Trainer's own overhead shows.

    A flag that asks for one of the features it turns off is a ValueError (Lightning's type and
    wording); the others get their "off" values. ``self.log`` warns and drops the value (LightningModule.log).
    """
    for name, feature in _BAREBONES_OFF:
        if _barebones_conflict(name, flags[name]):
            raise ValueError(
                f"`Trainer(barebones=True, {name}={flags[name]!r})` was passed. {feature} is disabled in barebones "
                "mode (barebones measures raw speed).\n"
                f"HINT: drop {name}=... or barebones=True."
            )
    for name in ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary"):
        flags[name] = False
    flags["num_sanity_val_steps"] = 0
    # log_every_n_steps keeps fulmen's 50 (Lightning stores 0): nothing is logged either way


def check_model_registry(model_registry: Any) -> None:
    """``model_registry`` uploads to Lightning AI's hosted model registry (litmodels); fulmen has no upload."""
    if model_registry is not None:
        raise MisconfigurationException(
            f"Trainer(model_registry={model_registry!r}): fulmen does not upload to Lightning's model registry "
            "(the litmodels cloud service); only None is accepted.\n"
            "HINT: drop model_registry=...; checkpoints are written by ModelCheckpoint under the run directory."
        )


def normalize_flags(flags: dict[str, Any], legacy: Mapping[str, Any], known: list[str]) -> dict[str, Any]:
    """Turn ``Trainer(...)``'s arguments into checked flags, in place: legacy names, Lightning's
    defaults that depend on other flags (``barebones``), warnings for accepted no-op flags.

    Returns the extras of ``translate_legacy_flags``.
    """
    extras = translate_legacy_flags(flags, legacy, known)
    schedule_accumulation(flags, extras)
    if flags["barebones"]:
        apply_barebones(flags)
    check_model_registry(flags["model_registry"])
    flags["log_every_n_steps"] = 50 if flags["log_every_n_steps"] is None else flags["log_every_n_steps"]
    for name in ("profiler", "plugins"):
        if flags[name] is not None:
            warnings.warn(
                f"Trainer({name}=...) is accepted for compatibility, but fulmen does not implement it; "
                "it has no effect.",
                stacklevel=3,
            )
    check_flags(flags)
    return extras


def resolve_loop_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """Loop settings after Lightning's defaults, ``fast_dev_run`` and ``overfit_batches`` apply.

    Returns Trainer attribute values: ``fast_dev_run`` (as given),
    ``limit_*_batches``, ``overfit_batches``, ``max_epochs``, ``max_steps``,
    ``num_sanity_val_steps``, ``val_check_interval``, ``check_val_every_n_epoch``.
    """
    fdr = flags["fast_dev_run"]
    n_dev = 1 if fdr is True else int(fdr)
    limits = {
        stage: check_limit(f"limit_{stage}_batches", flags[f"limit_{stage}_batches"])
        if flags[f"limit_{stage}_batches"] is not None
        else 1.0
        for stage in ("train", "val", "test", "predict")
    }
    overfit = check_limit("overfit_batches", flags["overfit_batches"])
    if overfit:
        limits["train"] = limits["val"] = overfit
    out: dict[str, Any] = {
        "fast_dev_run": fdr,
        "overfit_batches": overfit,
        "max_epochs": flags["max_epochs"],
        "max_steps": flags["max_steps"],
        "num_sanity_val_steps": 2 if flags["num_sanity_val_steps"] is None else flags["num_sanity_val_steps"],
        "val_check_interval": 1.0 if flags["val_check_interval"] is None else flags["val_check_interval"],
        "check_val_every_n_epoch": flags["check_val_every_n_epoch"],
    }
    if n_dev:
        limits = dict.fromkeys(limits, n_dev)
        out.update(max_steps=n_dev, max_epochs=1, num_sanity_val_steps=0, val_check_interval=1.0,
                   check_val_every_n_epoch=1)  # fmt: skip
    out.update({f"limit_{stage}_batches": value for stage, value in limits.items()})
    return out


def parse_loop_limits(
    min_steps: int | None, max_steps: int, min_epochs: int | None, max_epochs: int | None, has_time_limit: bool
) -> tuple[int, int]:
    """(min_epochs, max_epochs) as Lightning resolves them when fit starts.

    ``max_epochs`` None means 1000 unless a step or time limit is the stopping criterion (then
    -1, no epoch limit); ``min_epochs`` None means 0, or 1 when ``min_steps`` is set.
    """
    if max_epochs is None:
        max_epochs = 1000 if (max_steps == -1 and not has_time_limit) else -1
    if min_epochs is None:
        min_epochs = 1 if min_steps is not None else 0
    return min_epochs, max_epochs
