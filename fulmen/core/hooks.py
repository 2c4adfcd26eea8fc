"""Which hooks are overridden, decided once per run, so that empty hooks cost nothing per step.

The Trainer builds one ``HookTable`` for the module when a stage starts: ``table.module("on_x")``
is the module's bound method, or None when it keeps the base no-op. The callbacks' side is
``CallbackList.hooks`` (``fulmen/core/callback_list.py``), which follows changes to
``trainer.callbacks``. Loops test these once per call site instead of calling every no-op on
every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from fulmen.errors import MisconfigurationException


def is_overridden(obj: Any, name: str, base: type) -> bool:
    """True when ``obj.name`` is something other than ``base.name`` (instance attributes count)."""
    if name in getattr(obj, "__dict__", {}):
        return getattr(obj, name) is not None
    impl = getattr(type(obj), name, None)
    if impl is None:
        return False
    base_impl = getattr(base, name, None)
    if base_impl is None:
        return True
    return getattr(impl, "__code__", impl) is not getattr(base_impl, "__code__", base_impl)


# monitoring callbacks (their "on_train_epoch_end" runs after the module's, like Lightning)
MONITORING_CALLBACK_NAMES = frozenset({"ModelCheckpoint", "EarlyStopping", "Checkpoint"})


def is_monitoring_callback(callback: Any) -> bool:
    return any(klass.__name__ in MONITORING_CALLBACK_NAMES for klass in type(callback).__mro__)


def is_checkpoint_callback(callback: Any) -> bool:
    return any(klass.__name__ in ("ModelCheckpoint", "Checkpoint") for klass in type(callback).__mro__)


class HookTable:
    """Bound hook methods of the module, looked up once and cached per name."""

    def __init__(self, module: Any, module_base: type) -> None:
        self._module = module
        self._module_base = module_base
        self._mod_cache: dict[str, Callable[..., Any] | None] = {}

    def module(self, name: str) -> Callable[..., Any] | None:
        """The module's bound ``name`` method, or None when it is the base class's no-op."""
        if name in self._mod_cache:
            return self._mod_cache[name]
        fn = getattr(self._module, name) if is_overridden(self._module, name, self._module_base) else None
        self._mod_cache[name] = fn
        return fn


def move_data_to_device(batch: Any, device: Any) -> Any:
    """``batch`` with every tensor (in lists, tuples, dicts, dataclasses-as-dicts) moved to ``device``."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        moved = [move_data_to_device(b, device) for b in batch]
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
            return type(batch)(*moved)
        return type(batch)(moved) if isinstance(batch, tuple) else moved
    if isinstance(batch, dict):
        return type(batch)((k, move_data_to_device(v, device)) for k, v in batch.items())
    to = getattr(batch, "to", None)
    if callable(to):
        return to(device)
    return batch


def split_along_time(batch: Any, split_size: int) -> list[Any]:
    """Lightning 1.x's default ``tbptt_split_batch``: every tensor of ``batch`` cut along dim 1
    (time), every sequence item by item along its dim 0, into chunks of ``split_size`` steps."""
    items = batch if isinstance(batch, (list, tuple)) else [batch]
    lengths = {len(x[0]) for x in items if isinstance(x, (Tensor, list, tuple))}
    if len(lengths) != 1:
        raise MisconfigurationException(
            f"tbptt_split_batch: the batch's sequences have time lengths {sorted(lengths)}; expected one length "
            "(dim 1 of tensors, dim 0 of each list item).\nHINT: override tbptt_split_batch(batch, split_size)."
        )
    splits = []
    for t in range(0, lengths.pop(), split_size):
        split = []
        for x in items:
            if isinstance(x, Tensor):
                x = x[:, t : t + split_size]
            elif isinstance(x, (list, tuple)):
                x = [item[t : t + split_size] for item in x]
            split.append(x)
        splits.append(split)
    return splits


class ModuleHooks:
    """The overridable no-op hooks of a LightningModule (Lightning's names and signatures)."""

    truncated_bptt_steps: int = 0  # Lightning 1.x: > 0 cuts each training batch along time (dim 1)

    def on_fit_start(self) -> None: ...
    def on_fit_end(self) -> None: ...
    def on_train_start(self) -> None: ...
    def on_train_end(self) -> None: ...
    def on_validation_start(self) -> None: ...
    def on_validation_end(self) -> None: ...
    def on_test_start(self) -> None: ...
    def on_test_end(self) -> None: ...
    def on_predict_start(self) -> None: ...
    def on_predict_end(self) -> None: ...
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None: ...
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None: ...
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_train_epoch_start(self) -> None: ...
    def on_train_epoch_end(self) -> None: ...
    def on_validation_epoch_start(self) -> None: ...
    def on_validation_epoch_end(self) -> None: ...
    def on_test_epoch_start(self) -> None: ...
    def on_test_epoch_end(self) -> None: ...
    def on_predict_epoch_start(self) -> None: ...
    def on_predict_epoch_end(self) -> None: ...
    def on_before_zero_grad(self, optimizer: Any) -> None: ...
    def on_before_backward(self, loss: Any) -> None: ...
    def on_after_backward(self) -> None: ...
    def on_before_optimizer_step(self, optimizer: Any) -> None: ...
    def configure_model(self) -> None: ...
    def configure_callbacks(self) -> Any:
        return []
    def prepare_data(self) -> None: ...
    def setup(self, stage: str) -> None: ...
    def teardown(self, stage: str) -> None: ...
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return move_data_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def tbptt_split_batch(self, batch: Any, split_size: int) -> list[Any]:
        """Lightning 1.x: the pieces of a batch for truncated backprop through time."""
        return split_along_time(batch, split_size)
