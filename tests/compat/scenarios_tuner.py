"""Compatibility scenarios of the tuner (``pl.tuner.Tuner``, ``LearningRateFinder``,
``BatchSizeFinder``): the learning rates and smoothed losses of a range test, its suggestion,
the attribute it updates, the weights and trainer state it leaves behind; the batch sizes the
``power`` and ``binsearch`` searches try and settle on when a batch above a threshold "runs out
of CUDA memory" (a RuntimeError with Lightning's OOM text, so the search is deterministic on CPU);
and that a ``trainer.fit`` afterwards trains as usual.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from tests.compat.models import base_module, dataset, loader, trainer_kwargs

OOM_ABOVE = 20  # a batch larger than this "runs out of memory"


def _regression(n: int, batch_size: int) -> DataLoader:
    """A learnable 4 -> 1 problem (a fixed linear map plus a little noise), unshuffled."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5], [1.0]]) + 0.1 * torch.randn(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _weights(model: Any) -> list[float]:
    return [round(float(v), 6) for p in model.parameters() for v in p.detach().flatten()]


def _rounded(values: list[float], digits: int = 5) -> list[Any]:
    return [None if v != v else round(float(v), digits) for v in values]  # NaN -> None (JSON)


def _state(trainer: Any) -> dict[str, Any]:
    state = trainer.state
    return {
        "fn": None if state.fn is None else str(state.fn.value),
        "status": str(state.status.value),
        "stage": None if state.stage is None else str(state.stage.value),
        "global_step": trainer.global_step,
        "current_epoch": trainer.current_epoch,
        "callbacks": sorted(type(cb).__name__ for cb in trainer.callbacks),
    }


def _lr_module(pl: ModuleType, hparams: bool) -> type:
    class LRModule(base_module(pl)):
        def __init__(self, lr: float = 0.01) -> None:
            super().__init__()
            if hparams:
                self.save_hyperparameters()
            else:
                self.lr = lr
            self.fit_steps = 0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.fit_steps += 1
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            lr = self.hparams.lr if hparams else self.lr
            return torch.optim.SGD(self.parameters(), lr=lr)

    return LRModule


def _lr_find(pl: ModuleType, root: Path, hparams: bool, **kwargs: Any) -> dict[str, Any]:
    """A range test on 256 samples in batches of 16, then a fit of the same model and trainer."""
    model = _lr_module(pl, hparams)()
    before = _weights(model)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=2))
    tuner = importlib.import_module(f"{pl.__name__}.tuner").Tuner(trainer)
    finder = tuner.lr_find(model, train_dataloaders=_regression(256, 16), val_dataloaders=loader(8, 4), **kwargs)
    lr_after = float(model.hparams.lr) if hparams else float(model.lr)
    observed = {
        "lrs": _rounded(finder.results["lr"], 9),
        "losses": _rounded(finder.results["loss"]),
        "suggestion": finder.suggestion(),
        "suggestion_skip_5_2": finder.suggestion(skip_begin=5, skip_end=2),
        "lr_after": lr_after,
        "weights_restored": _weights(model) == before,
        "training_steps_run": model.fit_steps,
        "after_tune": _state(trainer),
    }
    trainer.fit(model, train_dataloaders=loader(16, 4))
    observed["after_fit"] = _state(trainer)
    observed["optimizer_lr_in_fit"] = trainer.optimizers[0].param_groups[0]["lr"]
    return observed


def lr_find_exponential(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``Tuner.lr_find`` in its default exponential mode, ``model.lr`` updated; the loss
    diverges at large rates, so the early stop ends the search."""
    return _lr_find(pl, root, hparams=False, num_training=40, max_lr=10.0)


def lr_find_linear_hparams(pl: ModuleType, root: Path) -> dict[str, Any]:
    """Linear mode with ``hparams.lr`` (save_hyperparameters) and no early stop."""
    return _lr_find(pl, root, hparams=True, num_training=25, mode="linear", max_lr=0.5, early_stop_threshold=None)


def lr_find_no_update(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``update_attr=False``: ``model.lr`` keeps its value."""
    return _lr_find(pl, root, hparams=False, num_training=15, update_attr=False)


def _batch_module(pl: ModuleType, sizes: list[int]) -> type:
    class BatchModule(base_module(pl)):
        def __init__(self, batch_size: int = 2) -> None:
            super().__init__()
            self.batch_size = batch_size

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            sizes.append(len(x))
            if len(x) > OOM_ABOVE:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return F.mse_loss(self(x), y)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(dataset(128), batch_size=self.batch_size)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(dataset(8), batch_size=4)

    return BatchModule


def _scale(pl: ModuleType, root: Path, **kwargs: Any) -> dict[str, Any]:
    sizes: list[int] = []
    model = _batch_module(pl, sizes)()
    before = _weights(model)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1))
    tuner = importlib.import_module(f"{pl.__name__}.tuner").Tuner(trainer)
    found = tuner.scale_batch_size(model, **kwargs)
    observed = {
        "search": {"found": found, "model_batch_size": model.batch_size, "batch_sizes_tried": list(sizes)},
        "restored": {"weights": _weights(model) == before, "after_tune": _state(trainer)},
    }
    sizes.clear()
    trainer.fit(model)
    observed["fit_after"] = {"batch_sizes": sorted(set(sizes)), "state": _state(trainer)}
    return observed


def scale_batch_size_power(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``power``: 2, 4, 8, 16 run, 32 runs out of memory: 16."""
    return _scale(pl, root, mode="power")


def scale_batch_size_binsearch(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``binsearch``: doubling until 32 fails, bisecting to 20, then the 5% margin: 19."""
    return _scale(pl, root, mode="binsearch", steps_per_trial=2)


def scale_batch_size_init_val(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``init_val=8`` on a module built with ``batch_size=2``: where the first trial starts."""
    return _scale(pl, root, mode="power", init_val=8, steps_per_trial=1)


def _callbacks_fit(pl: ModuleType, root: Path, finder: Any, model: Any, **fit: Any) -> dict[str, Any]:
    """A fit with ``finder`` among its callbacks: the search at fit start, then the fit itself."""
    seen: list[Any] = []

    class Watch(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            seen.append({"step": trainer.global_step, "weights": _weights(pl_module),
                         "lr": trainer.optimizers[0].param_groups[0]["lr"]})  # fmt: skip

    before = _weights(model)
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=2, callbacks=[finder, Watch()]))
    trainer.fit(model, **fit)
    return {
        "fit_start": {"step": seen[0]["step"], "lr": seen[0]["lr"], "weights_as_initial": seen[0]["weights"] == before},
        "after_fit": {**_state(trainer), "weights": _weights(model)},
    }


def lr_finder_callback(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``LearningRateFinder`` in an ordinary fit: the fit starts from the initial weights with the
    suggested learning rate and trains its two epochs."""
    finder = importlib.import_module(f"{pl.__name__}.callbacks").LearningRateFinder(num_training_steps=20)
    observed = _callbacks_fit(pl, root, finder, _lr_module(pl, False)(), train_dataloaders=_regression(64, 4))
    observed["suggestion"] = finder.optimal_lr.suggestion()
    observed["losses"] = _rounded(finder.optimal_lr.results["loss"])
    return observed


def batch_size_finder_callback(pl: ModuleType, root: Path) -> dict[str, Any]:
    """``BatchSizeFinder`` in an ordinary fit: the fit trains with the size found."""
    sizes: list[int] = []
    finder = importlib.import_module(f"{pl.__name__}.callbacks").BatchSizeFinder(steps_per_trial=1)
    observed = _callbacks_fit(pl, root, finder, _batch_module(pl, sizes)())
    observed["sizes"] = sizes
    observed["optimal_batch_size"] = finder.optimal_batch_size
    return observed


SCENARIOS = {
    "tuner_lr_find_exponential": lr_find_exponential,
    "tuner_lr_find_linear_hparams": lr_find_linear_hparams,
    "tuner_lr_find_no_update": lr_find_no_update,
    "tuner_scale_batch_size_power": scale_batch_size_power,
    "tuner_scale_batch_size_binsearch": scale_batch_size_binsearch,
    "tuner_scale_batch_size_init_val": scale_batch_size_init_val,
    "tuner_lr_finder_callback": lr_finder_callback,
    "tuner_batch_size_finder_callback": batch_size_finder_callback,
}
