"""Lightning 1.x Trainer flags that 1.9.5 still accepts: what a script using them gets.

Each scenario builds ``Trainer(<legacy flag>)`` exactly as a 1.x script did, fits (or tunes) a
tiny module and reports plain JSON: steps taken, metrics, checkpoint names, the callbacks the
Trainer holds, the categories of the warnings that name the flag, or the error class where the
flag is refused. Same contract as ``scenarios_1x_optim.py`` (``fn(pl, root) -> dict``, no import
of fulmen or pytorch_lightning), recorded from 1.9.5 into ``reference_1x/`` with

    PYTHONPATH=<worktree> /work/venvs/pl19/bin/python -m tests.compat.scenarios_1x_flags [name ...]

and compared by ``test_lightning_1x_parity.py``. The flags 1.9.5 had already removed
(``checkpoint_callback``, ``early_stop_callback``, ``weights_summary``, ``process_position``,
``distributed_backend``, ModelCheckpoint's ``filepath``/``prefix``/``period``) have no 1.9.5
reference; ``tests/runtime/test_legacy_flags.py`` covers them from the 0.x documentation.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

_QUIET = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}


def _r(value: Any) -> float:
    return round(float(value), 6)


def _module(pl: ModuleType, rows: list[list[int]]) -> Any:
    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.lr = 0.1
            self.batch_size = 2

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = (self.layer(x) - y).pow(2).mean()
            self.log("loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", (self.layer(x) - y).pow(2).mean())

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            trainer = self.trainer
            rows.append([trainer.current_epoch, batch_idx, trainer.accumulate_grad_batches, trainer.global_step])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return Regression()


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(12, 4, generator=generator), torch.randn(12, 1, generator=generator))
    return DataLoader(data, batch_size=2)


def _flag_warnings(caught: list[warnings.WarningMessage], flag: str) -> list[str]:
    """Categories of the warnings whose message names ``flag`` (the wording is not compared);
    Lightning's own LightningDeprecationWarning counts as the DeprecationWarning it subclasses."""
    names = {"DeprecationWarning" if issubclass(w.category, DeprecationWarning) else w.category.__name__
             for w in caught if flag in str(w.message)}  # fmt: skip
    return sorted(names)


def _construct(pl: ModuleType, root: Path, flag: str, value: Any, **flags: Any) -> tuple[Any, dict[str, Any]]:
    """``Trainer(flag=value)``: the trainer (None when refused) and what construction showed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer = pl.Trainer(default_root_dir=str(root), max_epochs=2, **{**_QUIET, **flags, flag: value})
        except Exception as error:  # the refusal itself is the observation
            return None, {"error": type(error).__name__, "warnings": _flag_warnings(caught, flag)}
    return trainer, {"error": None, "warnings": _flag_warnings(caught, flag)}


def _fit(pl: ModuleType, root: Path, flag: str, value: Any, **flags: Any) -> dict[str, Any]:
    """Fit 2 epochs x 6 batches (validation each epoch) with the flag; what the run did."""
    torch.manual_seed(0)
    trainer, observed = _construct(pl, root, flag, value, **flags)
    if trainer is None:
        return observed
    rows: list[list[int]] = []
    model = _module(pl, rows)
    trainer.fit(model, _loader(), _loader())
    checkpoints = sorted(p.name for p in root.rglob("*.ckpt"))
    own = ("Regression", "ModelSummary", "TQDMProgressBar", "ProgressBar")  # 1.9.5 keeps some defaults
    return {
        **observed,
        "epoch_batch_factor_global_step": rows,
        "global_step": trainer.global_step,
        "callback_metrics": {k: _r(v) for k, v in sorted(trainer.callback_metrics.items())},
        "checkpoints": checkpoints,
        "callbacks": sorted(type(c).__name__ for c in trainer.callbacks if type(c).__name__ not in own),
        "weights": {k: [_r(x) for x in v.flatten()] for k, v in sorted(model.state_dict().items())},
    }


def accumulate_grad_batches_dict(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``{1: 3}``: epoch 0 steps every batch, epoch 1 every 3rd; a GradientAccumulationScheduler appears."""
    return _fit(pl, root, "accumulate_grad_batches", {1: 3}, enable_checkpointing=True)


def replace_sampler_ddp_off(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``replace_sampler_ddp=False`` (2.x: use_distributed_sampler) on one device: training unchanged."""
    return _fit(pl, root, "replace_sampler_ddp", False)


def amp_backend_native(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``amp_backend='native'`` at the default 32-bit precision on CPU: nothing changes."""
    return _fit(pl, root, "amp_backend", "native")


def track_grad_norm_2(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``track_grad_norm=2`` with a CSVLogger: the gradient-norm metrics 1.x logged, and their values."""
    return _fit(pl, root, "track_grad_norm", 2, logger=pl.loggers.CSVLogger(str(root)))


def _tune(pl: ModuleType, root: Path, **flags: Any) -> dict[str, Any]:
    trainer, observed = _construct(pl, root, "auto_lr_find", flags.pop("auto_lr_find"), **flags)
    model = _module(pl, [])
    result = trainer.tune(model, train_dataloaders=_loader())
    return {**observed, "tune_result": {k: repr(v) for k, v in sorted((result or {}).items())},
            "global_step": trainer.global_step, "lr": model.lr, "batch_size": model.batch_size}  # fmt: skip


def tune_with_tuning_off(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``auto_lr_find=False, auto_scale_batch_size=False`` then ``trainer.tune(model)``: nothing runs."""
    return _tune(pl, root, auto_lr_find=False, auto_scale_batch_size=False)


def _tunable(pl: ModuleType, sizes: list[int]) -> Any:
    """A learnable regression whose loader reads ``self.batch_size``; a batch above 20 "runs out of
    CUDA memory" (Lightning's OOM text), so the batch-size search is deterministic on CPU."""

    class Tunable(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 1)
            self.lr = 0.01
            self.batch_size = 2

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            sizes.append(len(x))
            if len(x) > 20:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return (self.layer(x) - y).pow(2).mean()

        def train_dataloader(self) -> DataLoader:
            generator = torch.Generator().manual_seed(1)
            x = torch.randn(128, 4, generator=generator)
            y = x @ torch.tensor([[1.5], [-2.0], [0.5], [1.0]]) + 0.1 * torch.randn(128, 1, generator=generator)
            return DataLoader(TensorDataset(x, y), batch_size=self.batch_size)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return Tunable()


def _tune_flags(pl: ModuleType, root: Path, flag: str, value: Any, **kwargs: Any) -> dict[str, Any]:
    """``Trainer(flag=value)`` then ``trainer.tune(model, **kwargs)``: what ran and what it set."""
    trainer, observed = _construct(pl, root, flag, value)
    sizes: list[int] = []
    model = _tunable(pl, sizes)
    before = [_r(v) for v in model.layer.weight.flatten()]
    result = trainer.tune(model, **kwargs) or {}
    finder = result.get("lr_find")
    return {
        **observed,
        "tune_result_keys": sorted(result),
        "scale_batch_size": result.get("scale_batch_size"),
        "lr_find_lrs": None if finder is None else [round(float(v), 9) for v in finder.results["lr"]],
        "lr_find_losses": None if finder is None else [round(float(v), 5) for v in finder.results["loss"]],
        "lr": model.lr,
        "batch_size": model.batch_size,
        "batch_sizes_tried": sizes,
        "weights_restored": [_r(v) for v in model.layer.weight.flatten()] == before,
        "global_step": trainer.global_step,
    }


def tune_auto_lr_find(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``auto_lr_find=True``: tune() runs the range test and writes its suggestion to ``model.lr``."""
    return _tune_flags(pl, root, "auto_lr_find", True, lr_find_kwargs={"num_training": 30})


def tune_auto_scale_batch_size_binsearch(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``auto_scale_batch_size="binsearch"``: tune() bisects to the largest batch that fits."""
    return _tune_flags(pl, root, "auto_scale_batch_size", "binsearch", scale_batch_size_kwargs={"steps_per_trial": 1})


def _refused(flag: str, value: Any) -> Callable[[ModuleType, Path], dict[str, Any]]:
    def scenario(pl: ModuleType, root: Path) -> dict[str, Any]:
        return _construct(pl, root, flag, value)[1]

    scenario.__doc__ = f"``Trainer({flag}={value!r})`` on a CPU-only machine: the error class."
    return scenario


SCENARIOS_1X_FLAGS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "accumulate_grad_batches_dict": accumulate_grad_batches_dict,
    "replace_sampler_ddp_off": replace_sampler_ddp_off,
    "amp_backend_native": amp_backend_native,
    "track_grad_norm_2": track_grad_norm_2,
    "tune_with_tuning_off": tune_with_tuning_off,
    "tune_auto_lr_find": tune_auto_lr_find,
    "tune_auto_scale_batch_size_binsearch": tune_auto_scale_batch_size_binsearch,
    "gpus_list_on_cpu": _refused("gpus", [0, 1]),
    "gpus_string_on_cpu": _refused("gpus", "0,1"),
    "tpu_cores_on_cpu": _refused("tpu_cores", 8),
    "ipus_on_cpu": _refused("ipus", 1),
}

if __name__ == "__main__":
    import logging

    from tests.compat.scenarios_1x_optim import record

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    record(sys.argv[1:], SCENARIOS_1X_FLAGS)
