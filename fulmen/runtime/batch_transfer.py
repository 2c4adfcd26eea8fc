"""Moving a batch to the rank's device, through the user's transfer hooks where there are any.

Which hooks apply (the datamodule's override beats the module's) and whether anything needs
doing at all are decided once per run in ``attach``, so a CPU run without transfer hooks pays
one attribute check per batch.
"""

from __future__ import annotations

from typing import Any

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import is_overridden, move_data_to_device
from fulmen.runtime.hook_caller import HookCaller
from fulmen.runtime.precision import PrecisionPlugin
from fulmen.runtime.strategy import Strategy

_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


class BatchTransfer:
    """``transfer(batch, dataloader_idx)``: the batch on the strategy's device, in the precision's input dtype."""

    def __init__(self, strategy: Strategy, precision_plugin: PrecisionPlugin) -> None:
        self.strategy = strategy  # its root_device is settled when the run's environment is set up
        self.precision_plugin = precision_plugin
        self._fns: list[Any] = [None, None, None]
        self._custom = False
        self._convert_input: Any = None

    def attach(self, hooks: HookCaller, datamodule: LightningDataModule | None) -> None:
        """Take the run's transfer hooks (datamodule overrides first)."""
        self._fns = []
        for name in _TRANSFER_HOOKS:
            if datamodule is not None and is_overridden(datamodule, name, LightningDataModule):
                self._fns.append(getattr(datamodule, name))
            else:
                self._fns.append(hooks.module(name))
        self._custom = any(fn is not None for fn in self._fns)
        plugin = self.precision_plugin
        self._convert_input = plugin.convert_input if plugin.precision in ("64-true", "bf16-true") else None

    def changes_batches(self) -> bool:
        """Whether ``transfer`` does anything in this run (a CPU run without hooks: it returns the batch)."""
        return self._custom or self.strategy.root_device.type != "cpu" or self._convert_input is not None

    def __call__(self, batch: Any, dataloader_idx: int) -> Any:
        device = self.strategy.root_device
        if self._custom:
            before, transfer, after = self._fns
            if before is not None:
                batch = before(batch, dataloader_idx)
            if transfer is not None:
                batch = transfer(batch, device, dataloader_idx)
            else:
                batch = move_data_to_device(batch, device)
            if after is not None:
                batch = after(batch, dataloader_idx)
        elif device.type != "cpu":
            batch = move_data_to_device(batch, device)
        if self._convert_input is not None:
            batch = self._convert_input(batch)
        return batch
