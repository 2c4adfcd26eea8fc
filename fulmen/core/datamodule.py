"""LightningDataModule: the data half of an experiment (download, split, loaders) in one object."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fulmen.core.hooks import move_data_to_device
from fulmen.core.hparams import HyperparametersMixin

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer


class LightningDataModule(HyperparametersMixin):
    """Lightning's LightningDataModule API.

    ``prepare_data`` runs once per node (or once in total when ``prepare_data_per_node`` is
    False) before ``setup(stage)`` runs on every rank.
    """

    prepare_data_per_node: bool = True

    def __init__(self) -> None:
        self.trainer: Trainer | None = None

    def prepare_data(self) -> None:
        """Download or write data to disk; runs on one process per node. Do not set state here."""

    def setup(self, stage: str) -> None:
        """Build datasets for ``stage`` ("fit", "validate", "test" or "predict") on every rank."""

    def teardown(self, stage: str) -> None:
        """Release what ``setup`` built."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define train_dataloader")

    def val_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define val_dataloader")

    def test_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define test_dataloader")

    def predict_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define predict_dataloader")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return move_data_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        **kwargs: Any,
    ) -> Any:
        """Rebuild this datamodule from the hyperparameters a checkpoint saved for it (and its state)."""
        from fulmen.core.saving import load_from_checkpoint

        return load_from_checkpoint(cls, checkpoint_path, map_location=map_location, hparams_file=hparams_file, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """State stored in checkpoints under ``datamodule``."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def on_exception(self, exception: BaseException) -> None:
        """Called when a run raised."""
