"""Where a Trainer's batches come from: loader sources, limits, counts, validation timing.

``DataSources`` holds the loaders of one run (from the entry point's arguments, the datamodule
or the module's ``*_dataloader`` hooks), prepared by the strategy (distributed sampler) and
capped by the limits; the Trainer shows its counts as Lightning's attributes
(``num_training_batches``, ``num_val_batches``, ``val_check_batch``, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler

from fulmen.core.datamodule import LightningDataModule
from fulmen.core.hooks import is_overridden
from fulmen.errors import MisconfigurationException
from fulmen.runtime.combined_loader import CombinedLoader
from fulmen.runtime.hook_caller import HookCaller
from fulmen.runtime.loader_rebuild import rebuild_loader
from fulmen.runtime.loop_settings import LoopSettings
from fulmen.runtime.stages import RunningStage
from fulmen.runtime.strategy import Strategy
from fulmen.runtime.trainer_flags import limited_batches, parse_loop_limits


def _length(loader: Any) -> float:
    try:
        return float(len(loader))
    except TypeError:
        return float("inf")


def _one_or_list(loaders: list[Any] | None) -> Any:
    """Lightning's shape for ``trainer.*_dataloaders``: None, the one loader, or the list."""
    if not loaders:
        return None
    return loaders[0] if len(loaders) == 1 else loaders


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
    return rebuild_loader(
        loader, SequentialSampler(loader.dataset), hint="pass a loader without shuffling to use overfit_batches."
    )


class DataSources:
    """Loader sources (arguments, datamodule, module hooks), loading, limits and counts."""

    def __init__(self, strategy: Strategy, settings: LoopSettings) -> None:
        self.strategy = strategy
        self.settings = settings
        self.lightning_module: Any = None
        self.datamodule: LightningDataModule | None = None
        self._sources: dict[str, Any] = {}
        self.train_dataloader: Any = None
        self.num_training_batches: float = float("inf")
        self.val_loaders: list[Any] | None = None  # cached while the val loaders stay the same
        self.test_loaders: list[Any] | None = None  # this test / predict run's (trainer.test_dataloaders)
        self.predict_loaders: list[Any] | None = None
        self.num_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self.num_sanity_val_batches: list[float] = []
        self.val_check_batch: float = float("inf")
        self.val_enabled: bool | None = None  # decided once per run (None: not yet)

    def set_sources(self, model: Any, datamodule: Any, **loaders: Any) -> None:
        """The sources of the run about to start: ``loaders`` by kind ("train", "val", ...)."""
        if datamodule is not None and not isinstance(datamodule, LightningDataModule):
            raise MisconfigurationException(
                f"datamodule= expected a LightningDataModule, got {type(datamodule).__name__}."
            )
        if datamodule is not None and any(v is not None for v in loaders.values()):
            raise MisconfigurationException(
                "Dataloaders and a datamodule were both given; the Trainer would not know which to use.\n"
                "HINT: pass either dataloaders or datamodule=..."
            )
        self.lightning_module = model
        self.datamodule = datamodule
        self._sources = {k: v for k, v in loaders.items() if v is not None}
        self.train_dataloader = None
        self.val_loaders = self.test_loaders = self.predict_loaders = None  # Lightning: a new run forgets them
        self.val_enabled = None

    def passed_directly(self, kind: str) -> bool:
        """Whether this run's ``kind`` loaders ("train", "val", ...) were passed to the entry point
        (rather than built by a module or datamodule hook, which can be asked again)."""
        return kind in self._sources

    def prepare_data(self, hooks: HookCaller) -> None:
        """``prepare_data`` of the datamodule and the module, once per node (or once in all), then a barrier."""
        dm = self.datamodule
        per_node = dm.prepare_data_per_node if dm is not None else True
        is_preparer = self.strategy.local_rank == 0 if per_node else self.strategy.global_rank == 0
        if is_preparer:
            if dm is not None:
                dm.prepare_data()
            hooks.call_module("prepare_data")
        self.strategy.barrier("prepare_data")

    def _hook_source(self, stage: RunningStage) -> Any:
        """The bound ``*_dataloader`` method that supplies ``stage``'s loaders, or None."""
        name = stage.dataloader_hook
        dm = self.datamodule
        if dm is not None and is_overridden(dm, name, LightningDataModule):
            return getattr(dm, name)
        module = self.lightning_module
        fn = getattr(module, name, None)
        if fn is None and stage is RunningStage.TRAINING:
            fn = getattr(module, "tng_dataloader", None)
        return fn if callable(fn) else None

    def _loaders_for(self, stage: RunningStage) -> list[Any]:
        kind = stage.dataloader_prefix
        if kind in self._sources:
            return _as_loader_list(self._sources[kind])
        source = self._hook_source(stage)
        return _as_loader_list(source()) if source is not None else []

    def load_train_dataloader(self, reload: bool = False) -> None:
        """Load (or reload) the training loader and derive its batch count and validation timing."""
        if self.train_dataloader is not None and not reload:
            return
        source = self._sources.get("train")
        if source is None:
            hook = self._hook_source(RunningStage.TRAINING)
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
        limit = self.settings.limit_train_batches
        self.num_training_batches = limited_batches(_length(loader), limit, "limit_train_batches")
        self.val_check_batch = self._compute_val_check_batch()

    def estimated_stepping_batches(self) -> int | float:
        """Optimizer steps the whole fit will take, computed like Lightning (max_steps caps it;
        a loader without a length gives max_steps; no epoch limit gives inf or max_steps)."""
        settings = self.settings
        _, max_epochs = parse_loop_limits(
            settings.min_steps, settings.max_steps, settings.min_epochs, settings.max_epochs, settings.max_time is not None
        )
        max_steps = settings.max_steps
        if max_epochs == -1:
            return float("inf") if max_steps == -1 else max_steps
        self.load_train_dataloader()
        batches = self.num_training_batches
        if batches == float("inf"):
            return max_steps
        total = math.ceil(batches / settings.accumulate_grad_batches) * max(max_epochs, 1)
        return min(total, max_steps) if max_steps != -1 else total

    def _prepare_train_loader(self, loader: Any) -> Any:
        if self.settings.overfit_batches:
            loader = _without_shuffle(loader)
        use_sampler = self.settings.use_distributed_sampler
        return self.strategy.process_dataloader(loader, training=True, use_distributed_sampler=use_sampler)

    def _compute_val_check_batch(self) -> float:
        vci = self.settings.val_check_interval
        n = self.num_training_batches
        if isinstance(vci, int) and not isinstance(vci, bool):
            if vci > n and self.settings.check_val_every_n_epoch is not None:
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

    def val_possible(self) -> bool:
        """Whether this run has validation: a ``validation_step``, val data, and no zero limit."""
        module = self.lightning_module
        if module is None or getattr(module, "validation_step", None) is None or self.settings.limit_val_batches == 0:
            return False
        return "val" in self._sources or self._hook_source(RunningStage.VALIDATING) is not None

    def eval_loaders(self, stage: RunningStage) -> tuple[list[Any], list[float]]:
        """Loaders and batch counts for validation, test or predict (val loaders are cached)."""
        validating = stage.dataloader_prefix == "val"
        if validating and self.val_loaders is not None:
            return self.val_loaders, self.num_val_batches
        use_sampler = self.settings.use_distributed_sampler
        loaders = [
            self.strategy.process_dataloader(loader, training=False, use_distributed_sampler=use_sampler)
            for loader in self._loaders_for(stage)
        ]
        kind = stage.dataloader_prefix
        limit = self.settings.limit_for(stage)
        nums = [limited_batches(_length(loader), limit, f"limit_{kind}_batches") for loader in loaders]
        setattr(self, f"num_{kind}_batches", nums)
        if validating:
            self.val_loaders = loaders
            sanity = self.settings.num_sanity_val_steps
            steps = float("inf") if sanity == -1 else sanity
            self.num_sanity_val_batches = [min(n, steps) for n in nums]
        else:
            setattr(self, f"{kind}_loaders", loaders)
        return loaders, nums

    @property
    def val_dataloaders(self) -> Any:
        """The validation loader (a list when there are several), once loaded."""
        return _one_or_list(self.val_loaders)

    @property
    def test_dataloaders(self) -> Any:
        """The last test run's loader (a list when there are several), as Lightning's test loop keeps it."""
        return _one_or_list(self.test_loaders)

    @property
    def predict_dataloaders(self) -> Any:
        """The last predict run's loader (a list when there are several)."""
        return _one_or_list(self.predict_loaders)
