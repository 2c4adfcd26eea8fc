"""Compatibility scenarios about Lightning 2.6's Trainer surface that fulmen added last: the
members ``is_last_batch``, ``evaluating``, ``test_dataloaders`` / ``predict_dataloaders``,
``scaler``, ``distributed_sampler_kwargs``; the flags ``barebones`` and
``enable_autolog_hparams``; and ``load_from_checkpoint(strict=None)`` following ``strict_loading``.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.compat.models import base_module, loader, trainer_kwargs


def _members_run(pl: ModuleType, root: Path) -> dict[str, Any]:
    """fit (2 epochs x 3 batches, sanity check on), test, predict: what a callback reads where."""
    seen: dict[str, list[Any]] = {"is_last_batch.batch_start": [], "is_last_batch.epoch_start": []}

    class Reader(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            seen["is_last_batch.epoch_start"].append(trainer.is_last_batch)
            seen.setdefault("evaluating.train", [trainer.evaluating])

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            seen["is_last_batch.batch_start"].append(trainer.is_last_batch)

        def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
            seen["evaluating.sanity"] = [trainer.evaluating]

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            seen.setdefault("evaluating.validate", [trainer.evaluating])

        def on_test_start(self, trainer: Any, pl_module: Any) -> None:
            seen["evaluating.test"] = [trainer.evaluating]
            seen["test_dataloaders.in_test"] = [type(trainer.test_dataloaders).__name__]

        def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
            seen["evaluating.predict"] = [trainer.evaluating]

    trainer = pl.Trainer(**trainer_kwargs(str(root), limit_train_batches=3, limit_val_batches=2, callbacks=[Reader()]))
    model = base_module(pl)()
    before = {"is_last_batch": trainer.is_last_batch, "evaluating": trainer.evaluating}
    trainer.fit(model, loader(8), loader(4))
    after_fit = {"is_last_batch": trainer.is_last_batch, "test_dataloaders": trainer.test_dataloaders is None}
    trainer.test(model, loader(4), verbose=False)
    after_test = {"test_dataloaders_len": len(trainer.test_dataloaders), "predict_is_none": trainer.predict_dataloaders is None}
    trainer.predict(model, loader(4))
    after_predict = {
        "predict_dataloaders_len": len(trainer.predict_dataloaders),
        "test_is_none": trainer.test_dataloaders is None,
        "evaluating": trainer.evaluating,
    }
    return {
        **seen, "before": before, "after_fit": after_fit, "after_test": after_test, "after_predict": after_predict,
        "scaler_is_none": trainer.scaler is None,
        "distributed_sampler_kwargs": trainer.distributed_sampler_kwargs,
    }  # fmt: skip


def trainer_surface_members(pl: ModuleType, root: Path) -> dict[str, Any]:
    """is_last_batch / evaluating where callbacks read them; the test/predict loaders after each run."""
    return _members_run(pl, root)


_BAREBONES_CONFLICTS = {
    "enable_checkpointing": True,
    "logger": True,
    "enable_progress_bar": True,
    "log_every_n_steps": 5,
    "enable_model_summary": True,
    "num_sanity_val_steps": 2,
    "fast_dev_run": 1,
    "detect_anomaly": True,
}


def trainer_barebones(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Which flags barebones=True refuses (error type), what it leaves on, and that self.log is dropped."""
    refused = {}
    for name, value in _BAREBONES_CONFLICTS.items():
        try:
            pl.Trainer(barebones=True, default_root_dir=str(root), **{name: value})
            refused[name] = None
        except Exception as error:  # noqa: BLE001 - the type is the observation
            refused[name] = type(error).__name__

    class Logs(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss)
            return loss

    trainer = pl.Trainer(barebones=True, default_root_dir=str(root), max_steps=2, limit_val_batches=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Logs(), loader(8))
    return {
        "refused": refused,
        "barebones": trainer.barebones,
        "loggers": len(trainer.loggers),
        "callbacks": [type(cb).__name__ for cb in trainer.callbacks],
        "num_sanity_val_steps": trainer.num_sanity_val_steps,
        "global_step": trainer.global_step,
        "callback_metrics": sorted(trainer.callback_metrics),
        "log_warned": any("barebones=True" in str(w.message) and "self.log()" in str(w.message) for w in caught),
    }


def trainer_autolog_hparams(pl: ModuleType, root: Path) -> dict[str, Any]:
    """enable_autolog_hparams True / False: what a logger's log_hyperparams received in fit."""

    class Recorder(pl.loggers.Logger):
        def __init__(self) -> None:
            super().__init__()
            self.received: list[dict[str, Any]] = []

        @property
        def name(self) -> str:
            return "recorder"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            self.received.append(dict(params))

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            pass

    class WithHparams(base_module(pl)):
        def __init__(self, lr: float = 0.5) -> None:
            super().__init__()
            self.save_hyperparameters()

    out = {}
    for autolog in (True, False):
        logger = Recorder()
        kwargs = trainer_kwargs(str(root), logger=logger, max_steps=1, limit_val_batches=0)
        trainer = pl.Trainer(enable_autolog_hparams=autolog, **kwargs)
        trainer.fit(WithHparams(), loader(4))
        out[str(autolog)] = {"attribute": trainer.enable_autolog_hparams, "received": logger.received}
    return out


def load_strict_none(pl: ModuleType, root: Path) -> dict[str, Any]:
    """load_from_checkpoint with strict None/True/False on a checkpoint missing a key: per module
    class (strict_loading unset, a class attribute False, set False in __init__), the outcome."""
    base = base_module(pl)

    class Lenient(base):
        strict_loading = False

    class SetInInit(base):
        def __init__(self) -> None:
            super().__init__()
            self.strict_loading = False

    path = root / "partial.ckpt"
    state = {"layer.weight": torch.zeros(1, 4), "old.bias": torch.zeros(1)}
    torch.save({"state_dict": state, "hyper_parameters": {}, "pytorch-lightning_version": "2.6.6"}, path)
    out = {}
    for cls in (base, Lenient, SetInInit):
        for strict in (None, True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cls.load_from_checkpoint(path, strict=strict)
                    outcome = "loaded"
                except Exception as error:  # noqa: BLE001 - the type is the observation
                    outcome = type(error).__name__
            out[f"{cls.__name__}.strict={strict}"] = outcome
    return out


SCENARIOS = {
    "trainer_surface_members": trainer_surface_members,
    "trainer_barebones": trainer_barebones,
    "trainer_autolog_hparams": trainer_autolog_hparams,
    "load_strict_none": load_strict_none,
}
