"""Prepare a module's ``example_input_array`` the way a batch would be prepared, then call forward.

Shared by the model summary (In/Out sizes) and ``TensorBoardLogger.log_graph``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["example_input_on_device", "call_with_example_input", "module_device"]


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def _move(data: Any, device: torch.device) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(device)
    if isinstance(data, dict):
        return {k: _move(v, device) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        moved = [_move(v, device) for v in data]
        return type(data)(*moved) if hasattr(data, "_fields") else type(data)(moved)
    return data


def example_input_on_device(module: nn.Module, example: Any) -> Any:
    """``example`` passed through the module's batch-transfer hooks, or simply moved to its device.

    A LightningModule's ``on_before_batch_transfer`` / ``transfer_batch_to_device`` /
    ``on_after_batch_transfer`` run with ``dataloader_idx=0`` as for a real batch, so a model that
    normalises or reshapes there sees the same input in the summary as in training; under a
    Trainer, floating inputs are then cast like batches (``precision_plugin.convert_input``).
    """
    device = module_device(module)
    before = getattr(module, "on_before_batch_transfer", None)
    transfer = getattr(module, "transfer_batch_to_device", None)
    after = getattr(module, "on_after_batch_transfer", None)
    if callable(before):
        example = before(example, 0)
    example = transfer(example, device, 0) if callable(transfer) else _move(example, device)
    if callable(after):
        example = after(example, 0)
    # 64-true / bf16-true train with converted parameters; the Trainer casts real batches the same way.
    precision_plugin = getattr(getattr(module, "_trainer", None), "precision_plugin", None)
    convert_input = getattr(precision_plugin, "convert_input", None)
    if callable(convert_input):
        example = convert_input(example)
    return example


def call_with_example_input(module: nn.Module, example: Any) -> Any:
    """Call ``module`` the way Lightning does: a list/tuple is positional args, a dict keyword args."""
    if isinstance(example, (list, tuple)):
        return module(*example)
    if isinstance(example, dict):
        return module(**example)
    return module(example)
