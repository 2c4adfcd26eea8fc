"""Lightning-compatibility scenarios: small deterministic runs, parameterised by ``pl``.

Each scenario is ``fn(pl, root) -> dict``: it runs the ``pl`` module's Trainer under the folder
``root`` and returns what it observed as plain JSON data. ``record_lightning.py`` runs them
under PyTorch Lightning and stores the result in ``reference/<name>.json``;
``test_lightning_parity.py`` runs them under fulmen and compares. The scenarios never
import either library, so the code that produced the reference is the code under test.

This module holds the loop scenarios (hook order, batch counts, accumulation, when validation
runs, batch size inference, iterable datasets); the others, all collected in ``SCENARIOS``:

- ``scenarios_logging.py``: self.log options and reductions, where it may be called, value types
- ``scenarios_metrics.py``: torchmetrics objects in self.log / log_dict, their errors, checkpoints, resume
- ``scenarios_eval_epoch_end.py``: the metric dicts seen by on_{validation,test}_epoch_end
- ``scenarios_loggers.py``: metrics.csv rows, TensorBoard scalars, logger names and versions
- ``scenarios_artifacts.py``: log-dir layout, hyperparameters, fast_dev_run, test()/validate()
- ``scenarios_checkpoints.py``: checkpoint contents, ModelCheckpoint names, EarlyStopping
- ``scenarios_trainer.py``: Trainer attributes, LearningRateMonitor, exceptions, predict()
- ``scenarios_optim.py``: training numbers, manual optimization, skipped steps, resume, modes
- ``scenarios_utilities.py``: model summary, seed_everything, LearningRateMonitor names
- ``scenarios_inputs.py``: Trainer flag values refused at construction, an empty train loader
- ``scenarios_weight_callbacks.py``: StochasticWeightAveraging, Timer, BaseFinetuning/BackboneFinetuning
- ``scenarios_experiment_loggers.py``: what MLFlowLogger and WandbLogger write (file store, offline run)
- ``scenarios_misc_callbacks.py``: DeviceStatsMonitor's keys and steps, OnExceptionCheckpoint
- ``scenarios_rich.py``: what RichModelSummary and RichProgressBar print on a non-terminal console
- ``scenarios_cli.py``: LightningCLI's printed and saved config, subclass mode, a CLI fit
- ``scenarios_strategies.py``: pl.strategies names, strategy strings and FSDP arguments refused, FSDP on CPU
- ``scenarios_trainer_surface.py``: is_last_batch, evaluating, test/predict loaders, barebones, enable_autolog_hparams, strict=None
- ``scenarios_compile.py``: a torch.compile'd module: what the Trainer holds, hooks, checkpoint keys, self.log in a compiled step
- ``scenarios_callback_list.py``: ``trainer.callbacks`` appended to, removed from or assigned while a fit runs
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader

from tests.compat import (
    scenarios_artifacts,
    scenarios_callback_list,
    scenarios_checkpoints,
    scenarios_cli,
    scenarios_compile,
    scenarios_eval_epoch_end,
    scenarios_experiment_loggers,
    scenarios_inputs,
    scenarios_legacy,
    scenarios_loggers,
    scenarios_logging,
    scenarios_metrics,
    scenarios_misc_callbacks,
    scenarios_optim,
    scenarios_restore,
    scenarios_rich,
    scenarios_strategies,
    scenarios_trainer,
    scenarios_trainer_surface,
    scenarios_tuner,
    scenarios_utilities,
    scenarios_weight_callbacks,
)
from tests.compat.models import (
    base_module,
    dataset,
    loader,
    recording_callback,
    recording_datamodule,
    recording_module,
    trainer_kwargs,
)
from tests.compat.normalise import metrics, plain

Scenario = Callable[[ModuleType, Path], dict[str, Any]]


def hook_sequence(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Every module and callback hook, in call order, for a 2-epoch x 2-batch fit (1 val batch,
    sanity check on, the default ModelCheckpoint) and then test() on 1 batch."""
    calls: list[str] = []
    model = recording_module(pl, calls, train=2, val=1, test=1)
    callback = recording_callback(pl, calls)
    trainer = pl.Trainer(**trainer_kwargs(str(root), callbacks=[callback], enable_checkpointing=True))
    trainer.fit(model)
    fit_calls = list(calls)
    calls.clear()
    trainer.test(model, verbose=False)
    return {"fit": fit_calls, "test": list(calls)}


def hook_sequence_datamodule(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Module, DataModule and callback hooks for fit (1 epoch x 2 batches, sanity check on),
    then validate() and predict() with the same datamodule: whose *_dataloader is called."""
    calls: list[str] = []
    model = recording_module(pl, calls, train=2, val=1, test=1)
    datamodule = recording_datamodule(pl, calls, train=2, val=1)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, callbacks=[recording_callback(pl, calls)]))
    observed = {}
    for stage, run in (("fit", trainer.fit), ("validate", trainer.validate), ("predict", trainer.predict)):
        kwargs = {"verbose": False} if stage == "validate" else {}
        run(model, datamodule=datamodule, **kwargs)
        observed[stage] = list(calls)
        calls.clear()
    return observed


def hook_sequence_accumulate_clip(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The training-batch hooks under accumulate_grad_batches=2, gradient_clip_val and a
    per-step LR scheduler: 1 epoch x 3 batches, no validation (when zero_grad, clipping and
    lr_scheduler_step run, and that the last, incomplete window still steps)."""
    calls: list[str] = []
    model = recording_module(pl, calls, train=3, val=1, test=1)

    def configure_optimizers() -> Any:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    model.configure_optimizers = configure_optimizers
    flags = trainer_kwargs(
        str(root), max_epochs=1, limit_val_batches=0, accumulate_grad_batches=2, gradient_clip_val=1.0
    )
    pl.Trainer(**flags, callbacks=[recording_callback(pl, calls)]).fit(model)
    return {"fit": calls}


class _DictBatches(torch.utils.data.Dataset):
    """Samples as dicts, so the batch size must be inferred from a collated dict."""

    def __init__(self, n: int) -> None:
        self.data = dataset(n)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x, y = self.data[index]
        return {"x": x, "y": y}


def batch_size_inference(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Epoch means of self.log without batch_size when the last batch is short (5 samples,
    batch_size 2: sizes 2, 2, 1), for tuple and dict batches, in training and validation."""

    class Inferred(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = (batch["x"], batch["y"]) if isinstance(batch, dict) else batch
            self.log("train_mean", float(batch_idx + 1), on_step=False, on_epoch=True)
            return torch.nn.functional.mse_loss(self(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_mean", float(batch_idx + 1))

    out = {}
    for name, data in (("tuple_batches", dataset(5)), ("dict_batches", _DictBatches(5))):
        trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, num_sanity_val_steps=0))
        trainer.fit(Inferred(), DataLoader(data, batch_size=2), DataLoader(dataset(5, seed=1), batch_size=2))
        out[name] = metrics(trainer.callback_metrics)
    return out


class _Stream(torch.utils.data.IterableDataset):
    """An iterable dataset without __len__: 5 batches of 2 per pass."""

    def __iter__(self) -> Any:
        return iter(dataset(10))


def iterable_dataset(pl: ModuleType, root: Path) -> dict[str, Any]:
    """A training IterableDataset without __len__ (5 batches per pass), 2 epochs, and
    val_check_interval=2 (int, check_val_every_n_epoch=None): batch counts and validation points."""
    out = {"default": _fit_counting_loaders(pl, root / "default", DataLoader(_Stream(), batch_size=2))}
    out["val_check_interval_2"] = _fit_counting_loaders(
        pl, root / "every_2", DataLoader(_Stream(), batch_size=2), val_check_interval=2, check_val_every_n_epoch=None
    )
    # kept apart, so that each can fail on its own
    out["estimated_stepping_batches"] = {name: case.pop("estimated_stepping_batches") for name, case in out.items()}
    return out


def _counting_module(
    pl: ModuleType,
    events: list[list[int]],
    counts: dict[str, int],
    at_train_start: dict[str, Any],
    validation_points: list[list[int]],
) -> Any:
    class Counting(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            counts["training_step"] += 1
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            key = "sanity_validation_step" if self.trainer.sanity_checking else "validation_step"
            counts[key] += 1
            super().validation_step(batch, batch_idx)

        def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
            counts["optimizer_step"] += 1
            super().optimizer_step(*args, **kwargs)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            events.append([self.current_epoch, batch_idx, self.global_step])

        def on_validation_start(self) -> None:
            if not self.trainer.sanity_checking:
                counts["validation_runs"] += 1
                validation_points.append([self.current_epoch, self.global_step])

        def on_train_start(self) -> None:
            # what a progress bar sees when it sizes its bars
            at_train_start["num_training_batches"] = plain(float(self.trainer.num_training_batches))
            at_train_start["num_val_batches"] = plain([float(n) for n in self.trainer.num_val_batches])

    counts.update(
        training_step=0, validation_step=0, sanity_validation_step=0, optimizer_step=0, validation_runs=0
    )
    return Counting()


def _sanity_batches(trainer: Any) -> Any:
    """trainer.num_sanity_val_batches (a public Lightning 2.x attribute), or "<missing>"."""
    if not hasattr(trainer, "num_sanity_val_batches"):
        return "<missing>"
    return plain([float(n) for n in trainer.num_sanity_val_batches])


def _fit_counting(pl: ModuleType, root: Path, train: int, val: int, **flags: Any) -> dict[str, Any]:
    """Fit with ``train`` / ``val`` batches per loader; what the trainer counted and did."""
    return _fit_counting_loaders(pl, root, loader(2 * train), loader(2 * val, seed=1), **flags)


def _fit_counting_loaders(
    pl: ModuleType, root: Path, train: DataLoader, val: DataLoader | None = None, **flags: Any
) -> dict[str, Any]:
    events: list[list[int]] = []
    counts: dict[str, int] = {}
    at_train_start: dict[str, Any] = {}
    validation_points: list[list[int]] = []
    model = _counting_module(pl, events, counts, at_train_start, validation_points)
    trainer = pl.Trainer(**trainer_kwargs(str(root), **flags))
    trainer.fit(model, train, val if val is not None else loader(2, seed=1))
    return {
        "num_training_batches": plain(float(trainer.num_training_batches)),
        "num_val_batches": plain([float(n) for n in trainer.num_val_batches]),
        "sanity": _sanity_batches(trainer),
        "at_train_start": at_train_start,
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "counts": dict(sorted(counts.items())),
        "estimated_stepping_batches": plain(float(trainer.estimated_stepping_batches)),
        "train_batch_end": events,
        "validation_points": validation_points,
    }


BATCH_CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "limit_float": {"limit_train_batches": 0.5, "limit_val_batches": 0.25},
    "limit_int": {"limit_train_batches": 3, "limit_val_batches": 2},
    "limit_val_zero": {"limit_val_batches": 0},
    "overfit_int": {"overfit_batches": 2},
    "overfit_float": {"overfit_batches": 0.4},
    "fast_dev_run_true": {"fast_dev_run": True},
    "fast_dev_run_3": {"fast_dev_run": 3},
    "sanity_all": {"num_sanity_val_steps": -1},
    "max_steps_mid_epoch": {"max_steps": 3, "num_sanity_val_steps": 0},
}


def batch_counts(pl: ModuleType, root: Path) -> dict[str, Any]:
    """num_training_batches / num_val_batches and what ran, under limit_* / overfit /
    fast_dev_run; 5 train and 4 val batches, 2 epochs."""
    out = {name: _fit_counting(pl, root / name, train=5, val=4, **flags) for name, flags in BATCH_CASES.items()}
    # kept apart from the cases, so that one wrong attribute fails one comparison, not all
    sanity = {name: case.pop("sanity") for name, case in out.items()}
    at_train_start = {name: case.pop("at_train_start") for name, case in out.items()}
    out["num_sanity_val_batches"] = sanity
    out["batches_at_train_start"] = at_train_start
    return out


ACCUMULATION_CASES: dict[str, dict[str, Any]] = {
    "accumulate_1": {"accumulate_grad_batches": 1},
    "accumulate_2": {"accumulate_grad_batches": 2},
    "accumulate_3": {"accumulate_grad_batches": 3},
    "accumulate_2_max_steps_3": {"accumulate_grad_batches": 2, "max_steps": 3},
    "max_steps_4": {"max_steps": 4},
}


def accumulation(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Optimizer steps and global_step (after every batch) under accumulate_grad_batches,
    5 batches per epoch, 2 epochs (incomplete windows at the end of an epoch)."""
    out = {}
    for name, flags in ACCUMULATION_CASES.items():
        observed = _fit_counting(pl, root / name, train=5, val=1, num_sanity_val_steps=0, **flags)
        # batch counts belong to batch_counts; here only what steps and when
        keys = ("counts", "current_epoch", "estimated_stepping_batches", "global_step", "train_batch_end")
        out[name] = {key: observed[key] for key in keys}
    return out


def _validation_points(pl: ModuleType, root: Path, train: int, **flags: Any) -> list[list[int]]:
    """[epoch, global_step] each time validation starts (not the sanity check)."""
    points: list[list[int]] = []

    class Where(pl.Callback):
        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                points.append([trainer.current_epoch, trainer.global_step])

    kwargs = trainer_kwargs(str(root), callbacks=[Where()], num_sanity_val_steps=0, **flags)
    pl.Trainer(**kwargs).fit(base_module(pl)(), loader(2 * train), loader(2, seed=1))
    return points


VAL_CHECK_CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "float_0.5": {"val_check_interval": 0.5},
    "float_0.25": {"val_check_interval": 0.25},
    "int_2": {"val_check_interval": 2},
    "int_3": {"val_check_interval": 3},
    "int_3_across_epochs": {"val_check_interval": 3, "check_val_every_n_epoch": None},
    "every_2_epochs": {"check_val_every_n_epoch": 2, "max_epochs": 5},
    "every_2_epochs_float_0.5": {"check_val_every_n_epoch": 2, "val_check_interval": 0.5, "max_epochs": 4},
}


def val_check(pl: ModuleType, root: Path) -> dict[str, Any]:
    """After which training step validation runs: 4 batches per epoch, 2 epochs unless set."""
    return {name: _validation_points(pl, root / name, 4, **flags) for name, flags in VAL_CHECK_CASES.items()}


SCENARIOS: dict[str, Scenario] = {
    "hook_sequence": hook_sequence,
    "hook_sequence_accumulate_clip": hook_sequence_accumulate_clip,
    "hook_sequence_datamodule": hook_sequence_datamodule,
    "batch_counts": batch_counts,
    "accumulation": accumulation,
    "val_check": val_check,
    "batch_size_inference": batch_size_inference,
    "iterable_dataset": iterable_dataset,
    **scenarios_artifacts.SCENARIOS,
    **scenarios_loggers.SCENARIOS,
    **scenarios_restore.SCENARIOS,
    **scenarios_checkpoints.SCENARIOS,
    **scenarios_trainer.SCENARIOS,
    **scenarios_optim.SCENARIOS,
    **scenarios_utilities.SCENARIOS,
    **scenarios_logging.SCENARIOS,
    **scenarios_metrics.SCENARIOS,
    **scenarios_eval_epoch_end.SCENARIOS,
    **scenarios_inputs.SCENARIOS,
    **scenarios_legacy.SCENARIOS,
    **scenarios_weight_callbacks.SCENARIOS,
    **scenarios_experiment_loggers.SCENARIOS,
    **scenarios_misc_callbacks.SCENARIOS,
    **scenarios_rich.SCENARIOS,
    **scenarios_cli.SCENARIOS,
    **scenarios_tuner.SCENARIOS,
    **scenarios_strategies.SCENARIOS,
    **scenarios_trainer_surface.SCENARIOS,
    **scenarios_compile.SCENARIOS,
    **scenarios_callback_list.SCENARIOS,
}
