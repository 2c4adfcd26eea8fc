"""Compatibility scenarios about checkpoints: what the file holds, ModelCheckpoint's names and
top-k bookkeeping, and where EarlyStopping stops, for crafted metric sequences.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import torch

from tests.compat.models import base_module, hparams_module, loader, trainer_kwargs
from tests.compat.normalise import plain, tree


def _callback_states(checkpoint: dict[str, Any]) -> dict[str, list[str]]:
    return {key: sorted(state) for key, state in sorted(checkpoint.get("callbacks", {}).items())}


def _describe_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {
        "top_level_keys": sorted(checkpoint),
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "state_dict_keys": sorted(checkpoint.get("state_dict", {})),
        "optimizer_states": [sorted(state) for state in checkpoint.get("optimizer_states", [])],
        "lr_schedulers": [sorted(state) for state in checkpoint.get("lr_schedulers", [])],
        "hyper_parameters": plain(dict(checkpoint.get("hyper_parameters", {}))),
        "hparams_name": checkpoint.get("hparams_name"),
    }


def _scalars_only(state: Any) -> Any:
    """A loop's state_dict with nested values named, not spelled out (they may hold RNG states)."""
    if not isinstance(state, dict):
        return plain(state)
    return {
        key: "<nested>" if isinstance(value, (dict, list, tuple)) else plain(value) for key, value in state.items()
    }


def _loop_progress(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The loops' names, the fit loop's keys, its progress counters, and its loop state dicts
    (scalar entries; nested ones named): what Lightning reads to resume at the right epoch,
    batch and step."""
    loops = checkpoint.get("loops", {})
    fit_loop = loops.get("fit_loop", {})
    return {
        "loops": sorted(loops),
        "fit_loop_keys": sorted(fit_loop),
        "fit_loop_counters": {key: plain(value) for key, value in sorted(fit_loop.items()) if "progress" in key},
        "fit_loop_state_dicts": {
            key: _scalars_only(value) for key, value in sorted(fit_loop.items()) if key.endswith("state_dict")
        },
    }


def checkpoint_contents(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The dict in a ModelCheckpoint file and in trainer.save_checkpoint's files (full and
    weights_only): keys, callback state_keys and what each callback stores, and the hparams of
    load_from_checkpoint(..., hidden=5) (1 epoch x 2 batches, StepLR, save_hyperparameters)."""
    checkpoint_cb = pl.callbacks.ModelCheckpoint(dirpath=str(root / "ckpt"), monitor="val_loss")
    early_stopping = pl.callbacks.EarlyStopping(monitor="val_loss")
    flags = trainer_kwargs(
        str(root), max_epochs=1, callbacks=[checkpoint_cb, early_stopping], enable_checkpointing=True
    )
    trainer = pl.Trainer(**flags)
    trainer.fit(hparams_module(pl)(), loader(4), loader(2, seed=1))
    trainer.save_checkpoint(str(root / "manual.ckpt"))
    trainer.save_checkpoint(str(root / "weights_only.ckpt"), weights_only=True)
    saved = torch.load(checkpoint_cb.best_model_path, map_location="cpu", weights_only=False)
    manual = torch.load(root / "manual.ckpt", map_location="cpu", weights_only=False)
    weights = torch.load(root / "weights_only.ckpt", map_location="cpu", weights_only=False)
    reloaded = hparams_module(pl).load_from_checkpoint(str(root / "manual.ckpt"), hidden=5)
    # callback states apart from the file layout, so each is compared (and can fail) on its own
    return {
        "callback_state_keys": [cb.state_key for cb in (checkpoint_cb, early_stopping)],
        "callback_states": {
            "model_checkpoint_file": _callback_states(saved),
            "save_checkpoint_file": _callback_states(manual),
        },
        "files": tree(root),
        "model_checkpoint_file": _describe_checkpoint(saved),
        "save_checkpoint_file": _describe_checkpoint(manual),
        "save_checkpoint_weights_only_file": _describe_checkpoint(weights),
        "loops.model_checkpoint_file": _loop_progress(saved),
        "loops.save_checkpoint_file": _loop_progress(manual),
        "load_from_checkpoint_hparams_with_override": plain(dict(reloaded.hparams)),
    }


def stateful_callback_and_datamodule(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A callback and a datamodule with state_dict/load_state_dict: where their states sit in
    the checkpoint, and what load_state_dict receives, in which order, on fit(ckpt_path=...)."""
    calls: list[Any] = []

    class Counter(pl.Callback):
        def __init__(self, start: int = 0) -> None:
            self.count = start

        def on_train_batch_end(self, *args: Any) -> None:
            self.count += 1

        def state_dict(self) -> dict[str, Any]:
            return {"count": self.count}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            calls.append(["Counter.load_state_dict", state_dict])
            self.count = state_dict["count"]

        def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            calls.append(["Counter.on_load_checkpoint"])

    class Data(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.position = 0

        def train_dataloader(self) -> Any:
            self.position += 1
            return loader(4)

        def state_dict(self) -> dict[str, Any]:
            return {"position": self.position}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            calls.append(["Data.load_state_dict", state_dict])

    flags = trainer_kwargs(str(root), max_epochs=1, limit_val_batches=0)
    first = pl.Trainer(**flags, callbacks=[Counter()])
    first.fit(base_module(pl)(), datamodule=Data())
    first.save_checkpoint(str(root / "state.ckpt"))
    checkpoint = torch.load(root / "state.ckpt", map_location="cpu", weights_only=False)
    flags["max_epochs"] = 2
    resumed = Counter()
    second = pl.Trainer(**flags, callbacks=[resumed])
    second.fit(base_module(pl)(), datamodule=Data(), ckpt_path=str(root / "state.ckpt"))
    callback_states = checkpoint.get("callbacks", {})
    return {
        "callback_state_key": resumed.state_key,
        "callbacks_in_checkpoint": {key: plain(value) for key, value in sorted(callback_states.items())},
        "datamodule_state_in_checkpoint": {
            key: plain(value)
            for key, value in sorted(checkpoint.items())
            if isinstance(value, dict) and "position" in value
        },
        "load_calls": calls,
        "count_after_resume": resumed.count,
    }


_NAME_TEMPLATES = (
    None,
    "{epoch}",
    "{epoch:03d}-{val_loss:.2f}",
    "best-{val_loss:.3f}-{missing}",
    "{epoch}_{step}",
)


def checkpoint_names(pl: ModuleType, root: Path) -> dict[str, Any]:
    """ModelCheckpoint's naming constants and format_checkpoint_name for templates, with and
    without auto_insert_metric_name and a version suffix (no training)."""
    model_checkpoint_cls = pl.callbacks.ModelCheckpoint
    metrics = {"epoch": torch.tensor(3), "step": torch.tensor(12), "val_loss": torch.tensor(0.12345)}
    names: dict[str, Any] = {}
    for auto in (True, False):
        for template in _NAME_TEMPLATES:
            callback = model_checkpoint_cls(dirpath=str(root), filename=template, auto_insert_metric_name=auto)
            key = f"{template}|auto={auto}"
            names[key] = [Path(callback.format_checkpoint_name(metrics, ver=ver)).name for ver in (None, 1)]
    constants = ("CHECKPOINT_JOIN_CHAR", "CHECKPOINT_EQUALS_CHAR", "CHECKPOINT_NAME_LAST", "FILE_EXTENSION")
    return {
        "constants": {name: getattr(model_checkpoint_cls, name, "<missing>") for name in constants},
        "names": names,
    }


def _metric_module(pl: ModuleType, values: list[float], where: str = "val") -> Any:
    """Logs a crafted metric (the last value once the list runs out):
    ``val``: ``values[current_epoch]`` as val_metric in validation_step;
    ``train_epoch``: ``values[current_epoch]`` as train_metric, on_epoch, in training_step;
    ``train_step``: ``values[global_step]`` as train_metric, on_step, in training_step;
    ``val_slash``: like ``val``, named val/metric."""

    def pick(index: int) -> float:
        return values[min(index, len(values) - 1)]

    class Metric(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if where == "train_epoch":
                self.log("train_metric", pick(self.current_epoch), on_step=False, on_epoch=True)
            elif where == "train_step":
                self.log("train_metric", pick(self.global_step))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            if where == "val":
                self.log("val_metric", pick(self.current_epoch))
            elif where == "val_slash":
                self.log("val/metric", pick(self.current_epoch))

    return Metric()


def _name(path: Any) -> str | None:
    return Path(path).name if path else path


class CheckpointCase(NamedTuple):
    values: list[float]  # the metric per epoch (per step for where="train_step")
    options: dict[str, Any]  # ModelCheckpoint arguments
    epochs: int
    train_batches: int = 1
    where: str = "val"
    fits: int = 1  # fits in a row into the same dirpath (file name version counter)
    flags: dict[str, Any] | None = None  # extra Trainer flags


CHECKPOINT_CASES: dict[str, CheckpointCase] = {
    "min_top2_last": CheckpointCase(
        [0.5, 0.3, 0.4, 0.2, 0.6], {"monitor": "val_metric", "save_top_k": 2, "save_last": True}, 5
    ),
    "max_top2_template": CheckpointCase(
        [0.5, 0.3, 0.4, 0.2, 0.6],
        {"monitor": "val_metric", "mode": "max", "save_top_k": 2, "save_last": True,
         "filename": "best-{epoch:02d}-{val_metric:.3f}"},
        5,
    ),  # fmt: skip
    "no_metric_name": CheckpointCase(
        [0.5, 0.3, 0.4],
        {"monitor": "val_metric", "filename": "e{epoch}-{val_metric:.2f}", "auto_insert_metric_name": False},
        3,
    ),
    "ties_min_top2": CheckpointCase([0.5, 0.5, 0.5, 0.4], {"monitor": "val_metric", "save_top_k": 2}, 4),
    "no_monitor_default": CheckpointCase([0.5, 0.3, 0.4], {}, 3),
    "all_every_2_epochs": CheckpointCase([0.5], {"save_top_k": -1, "every_n_epochs": 2}, 5),
    "every_3_train_steps": CheckpointCase([0.5], {"save_top_k": -1, "every_n_train_steps": 3}, 4, train_batches=2),
    "train_step_metric_every_2_steps": CheckpointCase(
        [0.5, 0.4, 0.6, 0.3, 0.7, 0.2],
        {"monitor": "train_metric", "save_top_k": 2, "every_n_train_steps": 2},
        2,
        train_batches=3,
        where="train_step",
    ),
    "second_fit_same_dir": CheckpointCase([0.5], {"save_top_k": -1}, 2, fits=2),
    "top0_last": CheckpointCase([0.5, 0.3], {"monitor": "val_metric", "save_top_k": 0, "save_last": True}, 2),
    "save_on_train_epoch_end": CheckpointCase(
        [0.5, 0.3, 0.4, 0.2],
        {"monitor": "train_metric", "save_top_k": 2, "save_on_train_epoch_end": True},
        4,
        where="train_epoch",
    ),
    "slash_in_metric_name": CheckpointCase(
        [0.5, 0.3, 0.4], {"monitor": "val/metric", "filename": "{epoch}-{val/metric:.2f}"}, 3, where="val_slash"
    ),
    "custom_epoch_step_name": CheckpointCase([0.5], {"filename": "{epoch}-{step}", "save_top_k": -1}, 2),
    "every_2_epochs_top1_last": CheckpointCase(
        [0.5, 0.3, 0.4, 0.2, 0.6], {"monitor": "val_metric", "every_n_epochs": 2, "save_last": True}, 5
    ),
    "save_last_link": CheckpointCase([0.5, 0.3, 0.4], {"monitor": "val_metric", "save_last": "link"}, 3),
    "val_check_interval_0.5": CheckpointCase(
        [0.5, 0.3], {"monitor": "val_metric", "save_top_k": -1}, 2, train_batches=4, flags={"val_check_interval": 0.5}
    ),
}


def _checkpoint_case(pl: ModuleType, root: Path, name: str, case: CheckpointCase) -> dict[str, Any]:
    for _ in range(case.fits):
        callback = pl.callbacks.ModelCheckpoint(dirpath=str(root / name), **case.options)
        flags = trainer_kwargs(
            str(root),
            max_epochs=case.epochs,
            callbacks=[callback],
            num_sanity_val_steps=0,
            enable_checkpointing=True,
            **(case.flags or {}),
        )
        model = _metric_module(pl, case.values, case.where)
        pl.Trainer(**flags).fit(model, loader(2 * case.train_batches), loader(2, seed=1))
    last = root / name / "last.ckpt"
    return {
        "files": tree(root / name),
        "best_model_path": _name(callback.best_model_path),
        "best_model_score": plain(callback.best_model_score),
        "best_k_models": {_name(k): plain(v) for k, v in sorted(callback.best_k_models.items())},
        "kth_best_model_path": _name(callback.kth_best_model_path),
        "kth_value": plain(callback.kth_value) if callback.kth_value is not None else None,
        "last_model_path": _name(callback.last_model_path),
        "last_ckpt_epoch_step": (
            [torch.load(last, weights_only=False)[key] for key in ("epoch", "global_step")] if last.exists() else None
        ),
    }


def model_checkpoint(pl: ModuleType, root: Path) -> dict[str, Any]:
    """ModelCheckpoint's files and bookkeeping for crafted metric sequences."""
    out = {name: _checkpoint_case(pl, root, name, case) for name, case in CHECKPOINT_CASES.items()}
    # which epoch/step last.ckpt holds, kept apart so that it fails on its own
    out["last_ckpt_epoch_step"] = {name: case.pop("last_ckpt_epoch_step") for name, case in out.items()}
    return out


EARLY_STOPPING_CASES: dict[str, tuple[list[float], dict[str, Any]]] = {
    "min_patience_2": ([1.0, 0.9, 0.95, 0.91, 0.8, 0.7, 0.6], {"patience": 2}),
    "min_delta_0.05_patience_1": ([1.0, 0.97, 0.9, 0.88, 0.87, 0.5], {"patience": 1, "min_delta": 0.05}),
    "max_patience_1": ([0.1, 0.2, 0.2, 0.3], {"patience": 1, "mode": "max"}),
    "stopping_threshold": ([1.0, 0.7, 0.4, 0.3, 0.2], {"stopping_threshold": 0.5}),
    "divergence_threshold": ([1.0, 1.5, 2.5, 0.1], {"divergence_threshold": 2.0}),
    "non_finite": ([1.0, math.nan, 0.5, 0.4], {"patience": 3}),
    "min_epochs_4": ([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], {"patience": 1}),
    "train_epoch_end_patience_1": ([1.0, 0.9, 0.95, 0.93, 0.5], {"patience": 1, "check_on_train_epoch_end": True}),
    "val_check_interval_0.5_patience_2": ([1.0, 0.9, 0.9, 0.8], {"patience": 2}),
}
# extra Trainer flags per case (val_check_interval 0.5: two validations, two checks per epoch)
_EARLY_STOPPING_FLAGS: dict[str, dict[str, Any]] = {
    "min_epochs_4": {"min_epochs": 4},
    "val_check_interval_0.5_patience_2": {"val_check_interval": 0.5},
}


def early_stopping(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The epoch EarlyStopping stops at, and its state, for crafted metric sequences."""
    out = {}
    for name, (values, options) in EARLY_STOPPING_CASES.items():
        on_train = options.get("check_on_train_epoch_end", False)
        monitor = "train_metric" if on_train else "val_metric"
        callback = pl.callbacks.EarlyStopping(monitor=monitor, **options)
        epochs_started: list[int] = []

        class Epochs(pl.Callback):
            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                epochs_started.append(trainer.current_epoch)

        extra: dict[str, Any] = dict(_EARLY_STOPPING_FLAGS.get(name, {}))
        if on_train:
            extra["limit_val_batches"] = 0
        flags = trainer_kwargs(
            str(root), max_epochs=len(values), callbacks=[callback, Epochs()], num_sanity_val_steps=0, **extra
        )
        trainer = pl.Trainer(**flags)
        model = _metric_module(pl, values, "train_epoch" if on_train else "val")
        trainer.fit(model, loader(4), loader(2, seed=1))  # 2 training batches per epoch
        out[name] = {
            "epochs_started": epochs_started,
            "stopped_epoch": callback.stopped_epoch,
            "wait_count": callback.wait_count,
            "best_score": plain(callback.best_score),
            "current_epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "should_stop": trainer.should_stop,
        }
    return out


def batch_end_checkpoints(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Files saved from on_train_batch_end (as ModelCheckpoint(every_n_train_steps) does), in the
    middle of an epoch and at its last batch (1 epoch x 4 batches, validation every 2 batches,
    an epoch StepLR): their loop counters (the validation and epoch end due after those hooks
    have not run yet), and what a fit resumed from each runs (epoch, batch_idx, global_step of
    every training batch; validation runs)."""

    class SaveAt(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx in (1, 3):
                trainer.save_checkpoint(str(root / f"batch{batch_idx}.ckpt"))

    class Records(pl.Callback):
        def __init__(self) -> None:
            self.seen: list[list[int]] = []

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.seen.append([trainer.current_epoch, batch_idx, trainer.global_step])

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self.seen.append(["validation", trainer.current_epoch, trainer.global_step])

    flags = trainer_kwargs(str(root), max_epochs=1, val_check_interval=2, num_sanity_val_steps=0)
    pl.Trainer(**flags, callbacks=[SaveAt()]).fit(hparams_module(pl)(), loader(8), loader(4, seed=1))
    observed: dict[str, Any] = {}
    for name in ("batch1", "batch3"):
        checkpoint = torch.load(root / f"{name}.ckpt", map_location="cpu", weights_only=False)
        observed[f"loops.{name}"] = _loop_progress(checkpoint)
        records = Records()
        resumed = pl.Trainer(**{**flags, "max_epochs": 2}, callbacks=[records])
        resumed.fit(hparams_module(pl)(), loader(8), loader(4, seed=1), ckpt_path=str(root / f"{name}.ckpt"))
        observed[f"resumed_from_{name}"] = {"batches": records.seen, "global_step": resumed.global_step}
    return observed


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "batch_end_checkpoints": batch_end_checkpoints,
    "checkpoint_contents": checkpoint_contents,
    "stateful_callback_and_datamodule": stateful_callback_and_datamodule,
    "checkpoint_names": checkpoint_names,
    "model_checkpoint": model_checkpoint,
    "early_stopping": early_stopping,
}
