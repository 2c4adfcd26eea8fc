"""Where a Trainer's batches come from: loader sources, limits, counts, validation timing."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import is_overridden
from fulmen.errors import MisconfigurationException
from fulmen.runtime.combined_loader import CombinedLoader
from fulmen.runtime.trainer_flags import limited_batches

_HOOK_NAMES = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader",
               "predict": "predict_dataloader"}  # fmt: skip


def _length(loader: Any) -> float:
    try:
        return float(len(loader))
    except TypeError:
        return float("inf")


def _as_loader_list(loaders: Any) -> list[Any]:
    if loaders is None:
        return []
    if isinstance(loaders, (list, tuple)):
        return list(loaders)
    if isinstance(loaders, Mapping):
        return list(loaders.values())
    return [loaders]


def _without_shuffle(loader: Any) -> Any:
    """The same DataLoader with a sequential sampler (overfit_batches must see the same batches)."""
    if not isinstance(loader, DataLoader) or isinstance(loader.sampler, SequentialSampler):
        return loader
    if isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return loader
    warnings.warn("overfit_batches is set: the training dataloader's shuffling is turned off.", stacklevel=3)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
    )


class TrainerData:
    """Loader sources (arguments, datamodule, module hooks), loading, limits and counts."""

    def _init_data_state(self) -> None:
        self._sources: dict[str, Any] = {}
        self.train_dataloader: Any = None
        self.num_training_batches: float = float("inf")
        self._val_loaders: list[Any] | None = None
        self.num_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self.num_sanity_val_batches: list[float] = []
        self.val_check_batch: float = float("inf")
        self._val_enabled: bool | None = None  # decided once per run

    def _set_sources(self, model: Any, datamodule: Any, **loaders: Any) -> None:
        if datamodule is not None and not isinstance(datamodule, LightningDataModule):
            raise MisconfigurationException(
                f"datamodule= expected a LightningDataModule, got {type(datamodule).__name__}."
            )
        if datamodule is not None and any(v is not None for v in loaders.values()):
            raise MisconfigurationException(
                "Dataloaders and a datamodule were both given; the Trainer would not know which to use.\n"
                "HINT: pass either dataloaders or datamodule=..."
            )
        self.datamodule = datamodule
        self._sources = {k: v for k, v in loaders.items() if v is not None}
        self.train_dataloader = None
        self._val_loaders = None
        self._val_enabled = None

    def _hook_source(self, kind: str) -> Any:
        """The bound ``*_dataloader`` method that supplies ``kind`` loaders, or None."""
        name = _HOOK_NAMES[kind]
        dm = self.datamodule
        if dm is not None and is_overridden(dm, name, LightningDataModule):
            return getattr(dm, name)
        module = self.lightning_module
        fn = getattr(module, name, None)
        if fn is None and kind == "train":
            fn = getattr(module, "tng_dataloader", None)
        return fn if callable(fn) else None

    def _loaders_for(self, kind: str) -> list[Any]:
        if kind in self._sources:
            return _as_loader_list(self._sources[kind])
        source = self._hook_source(kind)
        return _as_loader_list(source()) if source is not None else []

    def _load_train_dataloader(self, reload: bool = False) -> None:
        if self.train_dataloader is not None and not reload:
            return
        source = self._sources.get("train")
        if source is None:
            hook = self._hook_source("train")
            source = hook() if hook is not None else None
        if source is None or (isinstance(source, (list, tuple, Mapping)) and not source):
            raise MisconfigurationException(
                "trainer.fit() found no training data: no train_dataloaders argument, no datamodule "
                "train_dataloader and no train_dataloader() on the module.\n"
                "HINT: trainer.fit(model, train_dataloaders=DataLoader(...)) or define train_dataloader()."
            )
        if isinstance(source, Mapping) or (isinstance(source, (list, tuple)) and len(source) > 1):
            # Lightning's "max_size_cycle": batches shaped like the collection of loaders
            items = source.items() if isinstance(source, Mapping) else enumerate(source)
            prepared = {key: self._prepare_train_loader(value) for key, value in items}
            if not all(_length(v) < float("inf") for v in prepared.values()):
                raise MisconfigurationException(
                    "Several training dataloaders need a length each to be combined.\n"
                    "HINT: give every loader a finite length, or train on one loader."
                )
            combined = prepared if isinstance(source, Mapping) else type(source)(prepared.values())
            loader: Any = CombinedLoader(combined)
        else:
            loader = self._prepare_train_loader(source[0] if isinstance(source, (list, tuple)) else source)
        self.train_dataloader = loader
        self.num_training_batches = limited_batches(_length(loader), self.limit_train_batches, "limit_train_batches")
        self.val_check_batch = self._compute_val_check_batch()

    def _prepare_train_loader(self, loader: Any) -> Any:
        if self.overfit_batches:
            loader = _without_shuffle(loader)
        return self.strategy.process_dataloader(loader, training=True, use_distributed_sampler=self.use_distributed_sampler)

    def _compute_val_check_batch(self) -> float:
        vci = self.val_check_interval
        n = self.num_training_batches
        if isinstance(vci, int) and not isinstance(vci, bool):
            if vci > n and self.check_val_every_n_epoch is not None:
                raise MisconfigurationException(
                    f"Trainer(val_check_interval={vci}) is more than the {int(n)} training batches of an epoch.\n"
                    "HINT: lower it, set check_val_every_n_epoch=None to count batches across epochs, "
                    "or set limit_val_batches=0 to turn validation off."
                )
            return float(vci)
        if n == float("inf"):
            if vci != 1.0:
                raise MisconfigurationException(
                    f"Trainer(val_check_interval={vci}) is a fraction, but the training loader has no length.\n"
                    "HINT: use an int val_check_interval (every N batches)."
                )
            return float("inf")
        return float(max(1, int(n * vci)))

    def _val_possible(self) -> bool:
        module = self.lightning_module
        if module is None or getattr(module, "validation_step", None) is None or self.limit_val_batches == 0:
            return False
        return "val" in self._sources or self._hook_source("val") is not None

    def _eval_loaders(self, stage: str) -> tuple[list[Any], list[float]]:
        """Loaders and batch counts for "validate", "test" or "predict" (val loaders are cached)."""
        kind = {"validate": "val", "test": "test", "predict": "predict"}[stage]
        if kind == "val" and self._val_loaders is not None:
            return self._val_loaders, self.num_val_batches
        loaders = [
            self.strategy.process_dataloader(loader, training=False, use_distributed_sampler=self.use_distributed_sampler)
            for loader in self._loaders_for(kind)
        ]
        limit = getattr(self, f"limit_{kind}_batches")
        nums = [limited_batches(_length(loader), limit, f"limit_{kind}_batches") for loader in loaders]
        setattr(self, f"num_{kind}_batches", nums)
        if kind == "val":
            self._val_loaders = loaders
            steps = float("inf") if self.num_sanity_val_steps == -1 else self.num_sanity_val_steps
            self.num_sanity_val_batches = [min(n, steps) for n in nums]
        return loaders, nums

    @property
    def val_dataloaders(self) -> Any:
        """The validation loader (a list when there are several), once loaded."""
        loaders = self._val_loaders
        if not loaders:
            return None
        return loaders[0] if len(loaders) == 1 else loaders

    def _should_validate(self, batch_idx: int, is_last: bool) -> bool:
        """Whether validation is due after this training batch (Lightning's rules)."""
        if self._val_enabled is None:
            self._val_enabled = self._val_possible()
        if not self._val_enabled:
            return False
        n = self.check_val_every_n_epoch
        if n is not None and (self.current_epoch + 1) % n != 0:
            return False
        if self.should_stop and self.fit_loop.can_stop_early:
            return True
        if self.val_check_batch == float("inf"):
            return is_last
        current = self.fit_loop.total_batch_idx if n is None else batch_idx + 1
        return current % self.val_check_batch == 0
