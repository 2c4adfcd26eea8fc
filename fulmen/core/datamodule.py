"""LightningDataModule: the data half of an experiment (download, split, loaders) in one object."""

from __future__ import annotations

from collections.abc import Mapping
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

    name: str | None = None  # Lightning's class attribute; nothing in the loops reads it
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
    def from_datasets(
        cls,
        train_dataset: Any = None,
        val_dataset: Any = None,
        test_dataset: Any = None,
        predict_dataset: Any = None,
        batch_size: int = 1,
        num_workers: int = 0,
        **datamodule_kwargs: Any,
    ) -> LightningDataModule:
        """A datamodule whose loaders wrap the given datasets (each may be a dataset, a sequence
        or a mapping of datasets); training loaders shuffle unless the dataset is iterable.

        ``batch_size`` / ``num_workers`` also go to ``cls.__init__`` when it accepts them.
        """
        import inspect

        import torch
        from torch.utils.data import DataLoader, Dataset, IterableDataset

        def loader(dataset: Any, shuffle: bool) -> DataLoader:
            return DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=shuffle and not isinstance(dataset, IterableDataset),
                num_workers=num_workers,
                pin_memory=torch.cuda.is_available(),
            )

        def loaders(datasets: Any, shuffle: bool = False) -> Any:
            if isinstance(datasets, Dataset):
                return loader(datasets, shuffle)
            if isinstance(datasets, Mapping):
                return {key: loaders(value, shuffle) for key, value in datasets.items()}
            if isinstance(datasets, (list, tuple)):
                return type(datasets)(loaders(value, shuffle) for value in datasets)
            raise TypeError(
                f"from_datasets got a {type(datasets).__name__}; expected a torch Dataset, or a list, tuple or "
                "dict of them."
            )

        params = inspect.signature(cls.__init__).parameters
        takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        special = {"batch_size": batch_size, "num_workers": num_workers}
        if not takes_var_kwargs:
            special = {key: value for key, value in special.items() if key in params}
        datamodule = cls(**datamodule_kwargs, **special)
        for name, datasets, shuffle in (
            ("train_dataloader", train_dataset, True),
            ("val_dataloader", val_dataset, False),
            ("test_dataloader", test_dataset, False),
            ("predict_dataloader", predict_dataset, False),
        ):
            if datasets is not None:
                setattr(datamodule, name, lambda datasets=datasets, shuffle=shuffle: loaders(datasets, shuffle))
        return datamodule

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
