"""Tiny deterministic models, data and recorders shared by the compatibility scenarios.

Everything here takes the ``pl`` module as an argument instead of importing it, so the same
code runs under PyTorch Lightning (when ``tests/compat/record_lightning.py`` records the
reference data) and under fulmen (when ``tests/compat/test_lightning_parity.py`` compares).
Nothing here may import fulmen or pytorch_lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

# Module hooks a Lightning 2.x user can override; the hook scenario wraps every one of them.
# configure_model is a Lightning 2.1+ hook: a script that defines it expects it to be called.
MODULE_HOOKS = (
    "prepare_data", "setup", "teardown", "configure_model", "configure_callbacks",
    "configure_optimizers", "on_fit_start", "on_fit_end",
    "on_train_start", "on_train_end", "on_train_epoch_start", "on_train_epoch_end",
    "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start",
    "on_validation_epoch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_validation_model_eval", "on_validation_model_train", "on_validation_model_zero_grad",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_test_batch_start", "on_test_batch_end", "on_test_model_eval", "on_test_model_train",
    "on_before_backward", "backward", "on_after_backward", "on_before_optimizer_step",
    "configure_gradient_clipping", "clip_gradients", "optimizer_step", "lr_scheduler_step",
    "on_before_zero_grad", "optimizer_zero_grad",
    "on_save_checkpoint", "on_load_checkpoint",
    "on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer",
    "train_dataloader", "val_dataloader", "test_dataloader",
    "training_step", "validation_step", "test_step",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end", "on_predict_model_eval",
    "predict_dataloader", "predict_step",
)  # fmt: skip

CALLBACK_HOOKS = (
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start",
    "on_sanity_check_end", "on_train_start", "on_train_end", "on_train_epoch_start",
    "on_train_epoch_end", "on_train_batch_start", "on_train_batch_end",
    "on_validation_start", "on_validation_end", "on_validation_epoch_start",
    "on_validation_epoch_end", "on_validation_batch_start", "on_validation_batch_end",
    "on_test_start", "on_test_end", "on_test_epoch_start", "on_test_epoch_end",
    "on_test_batch_start", "on_test_batch_end", "on_before_backward", "on_after_backward",
    "on_before_optimizer_step", "on_before_zero_grad", "on_save_checkpoint",
    "on_load_checkpoint", "state_dict", "load_state_dict", "on_exception",
    "on_predict_start", "on_predict_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)  # fmt: skip

DATAMODULE_HOOKS = (
    "prepare_data", "setup", "teardown", "train_dataloader", "val_dataloader", "test_dataloader",
    "predict_dataloader", "on_before_batch_transfer", "transfer_batch_to_device",
    "on_after_batch_transfer", "state_dict", "load_state_dict", "on_exception",
)  # fmt: skip

# Where batch_idx sits among a module hook's positional arguments (callbacks: +2 for
# trainer, pl_module). Recording it makes a diff of two sequences readable.
_BATCH_IDX_POSITION = {
    "on_train_batch_start": 1, "on_train_batch_end": 2,
    "on_validation_batch_start": 1, "on_validation_batch_end": 2,
    "on_test_batch_start": 1, "on_test_batch_end": 2,
    "on_predict_batch_start": 1, "on_predict_batch_end": 2,
    "training_step": 1, "validation_step": 1, "test_step": 1, "predict_step": 1,
}  # fmt: skip


def dataset(n: int, seed: int = 0) -> TensorDataset:
    """``n`` samples of a 4 -> 1 regression problem, the same on every run."""
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 4, generator=generator), torch.randn(n, 1, generator=generator))


def loader(n: int, batch_size: int = 2, seed: int = 0) -> DataLoader:
    """An unshuffled loader of ``n // batch_size`` batches (n is always a multiple here)."""
    return DataLoader(dataset(n, seed), batch_size=batch_size)


def trainer_kwargs(root: str, **overrides: Any) -> dict[str, Any]:
    """Quiet, single-CPU Trainer flags; scenarios override what they observe."""
    kwargs: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "default_root_dir": root,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "max_epochs": 2,
    }
    kwargs.update(overrides)
    return kwargs


def base_module(pl: ModuleType) -> type:
    """A linear regression LightningModule; scenarios subclass it."""

    class Base(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.mse_loss(self(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", F.mse_loss(self(x), y))

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("test_loss", F.mse_loss(self(x), y))

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self(batch[0])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Base


def hparams_module(pl: ModuleType) -> type:
    """``base_module`` with save_hyperparameters() (lr, hidden, name) and a StepLR scheduler."""

    class WithHparams(base_module(pl)):
        def __init__(self, lr: float = 0.1, hidden: int = 3, name: str = "tiny") -> None:
            super().__init__()
            self.save_hyperparameters()

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1)}

    return WithHparams


def _entry(prefix: str, name: str, args: tuple, kwargs: dict, offset: int) -> str:
    """``prefix + name`` plus the stage or batch index, e.g. ``setup(fit)``, ``training_step(1)``."""
    if name in ("setup", "teardown"):
        stage = kwargs.get("stage", args[offset] if len(args) > offset else None)
        # Lightning passes a str-enum member; compare by value, as user code (stage == "fit") does
        return f"{prefix}{name}({getattr(stage, 'value', stage)})"
    position = _BATCH_IDX_POSITION.get(name)
    if position is not None:
        position += offset
        batch_idx = args[position] if len(args) > position else kwargs.get("batch_idx")
        return f"{prefix}{name}({batch_idx})"
    return prefix + name


def _recording(prefix: str, name: str, parent: Callable | None, offset: int) -> Callable:
    def hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(_entry(prefix, name, args, kwargs, offset))
        return None if parent is None else parent(self, *args, **kwargs)

    hook.__name__ = name
    return hook


def recording_callback(pl: ModuleType, calls: list[str]) -> Any:
    """A Callback that appends ``"Callback.<hook>"`` to ``calls`` on entry of every hook."""
    namespace = {
        name: _recording("Callback.", name, getattr(pl.Callback, name, None), 2)
        for name in CALLBACK_HOOKS
    }
    callback_cls = type("RecordingCallback", (pl.Callback,), namespace)
    callback = callback_cls()
    callback.calls = calls
    return callback


def recording_module(
    pl: ModuleType, calls: list[str], train: int, val: int, test: int, base: type | None = None
) -> Any:
    """A module that appends every hook name to ``calls`` on entry; loaders of the given sizes.
    ``base`` (default: ``base_module(pl)``) supplies the steps and configure_optimizers."""
    base = base or base_module(pl)

    class Loaders(base):
        def train_dataloader(self) -> DataLoader:
            return loader(2 * train)

        def val_dataloader(self) -> DataLoader:
            return loader(2 * val, seed=1)

        def test_dataloader(self) -> DataLoader:
            return loader(2 * test, seed=2)

        def predict_dataloader(self) -> DataLoader:
            return loader(2 * test, seed=3)

    namespace = {}
    for name in MODULE_HOOKS:
        parent = getattr(Loaders, name, None)
        namespace[name] = _recording("", name, parent, 0)
    module_cls = type("RecordingModule", (Loaders,), namespace)
    module = module_cls()
    module.calls = calls
    return module


def recording_datamodule(pl: ModuleType, calls: list[str], train: int, val: int) -> Any:
    """A LightningDataModule that appends ``"DataModule.<hook>"`` to ``calls`` on entry."""

    class Loaders(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return loader(2 * train)

        def val_dataloader(self) -> DataLoader:
            return loader(2 * val, seed=1)

        def test_dataloader(self) -> DataLoader:
            return loader(2 * val, seed=2)

        def predict_dataloader(self) -> DataLoader:
            return loader(2 * val, seed=3)

    namespace = {name: _recording("DataModule.", name, getattr(Loaders, name, None), 0) for name in DATAMODULE_HOOKS}
    datamodule = type("RecordingDataModule", (Loaders,), namespace)()
    datamodule.calls = calls
    return datamodule
