"""LightningDataModule: Lightning's classmethods that build datamodules."""

from __future__ import annotations


def test_from_datasets_builds_loaders_for_each_given_dataset() -> None:
    import torch
    from torch.utils.data import RandomSampler, SequentialSampler, TensorDataset

    from fulmen.core.datamodule import LightningDataModule

    train, val = TensorDataset(torch.arange(8.0)), TensorDataset(torch.arange(4.0))
    dm = LightningDataModule.from_datasets(train_dataset=train, val_dataset={"a": val, "b": val}, batch_size=4)
    train_loader = dm.train_dataloader()
    assert len(train_loader) == 2 and isinstance(train_loader.sampler, RandomSampler)
    val_loaders = dm.val_dataloader()
    assert set(val_loaders) == {"a", "b"} and isinstance(val_loaders["a"].sampler, SequentialSampler)
    assert len(val_loaders["a"]) == 1


def test_from_datasets_passes_batch_size_to_an_init_that_takes_it() -> None:
    import torch
    from torch.utils.data import TensorDataset

    from fulmen.core.datamodule import LightningDataModule

    class Data(LightningDataModule):
        def __init__(self, batch_size: int = 1) -> None:
            super().__init__()
            self.batch_size = batch_size

    dm = Data.from_datasets(train_dataset=TensorDataset(torch.arange(8.0)), batch_size=4)
    assert isinstance(dm, Data) and dm.batch_size == 4
