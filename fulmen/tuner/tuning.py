"""``Tuner(trainer)``: ``lr_find`` and ``scale_batch_size`` (Lightning 2.x's ``pl.tuner.tuning``).

Each method runs one fit (or validate/test/predict) of ``trainer`` with the matching callback
(``LearningRateFinder`` / ``BatchSizeFinder``) first in its callbacks; the callback searches at
the start of that run, restores the state it found, and ends the run early (a finished run, not
a failed one). The trainer is then ready for ``trainer.fit`` as if nothing had run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fulmen.callbacks.batch_size_finder import BatchSizeFinder
from fulmen.callbacks.lr_finder import LearningRateFinder
from fulmen.errors import MisconfigurationException

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.datamodule import LightningDataModule
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer
    from fulmen.tuner.lr_finder import _LRFinder

_METHODS = ("fit", "validate", "test", "predict")


class Tuner:
    """Tune a model's learning rate or batch size with the given Trainer."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def scale_batch_size(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        method: Literal["fit", "validate", "test", "predict"] = "fit",
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> int | None:
        """The largest batch size that runs without running out of memory; it is also written
        to ``batch_arg_name`` on the model, its hparams and the datamodule (Lightning's search:
        ``power`` doubles until an OOM, ``binsearch`` then bisects and takes ``margin`` off)."""
        _check_tuner_configuration(train_dataloaders, val_dataloaders, dataloaders, method)
        _check_scale_batch_size_configuration(self._trainer)
        finder = BatchSizeFinder(mode=mode, steps_per_trial=steps_per_trial, init_val=init_val, max_trials=max_trials,
                                 batch_arg_name=batch_arg_name, margin=margin, max_val=max_val)  # fmt: skip
        finder._early_exit = True
        trainer = self._trainer
        trainer.callbacks = [finder, *trainer.callbacks]
        try:
            if method == "fit":
                trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
            elif method == "validate":
                trainer.validate(model, dataloaders, datamodule=datamodule)
            elif method == "test":
                trainer.test(model, dataloaders, datamodule=datamodule)
            else:
                trainer.predict(model, dataloaders, datamodule=datamodule)
        finally:
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not finder]
        return finder.optimal_batch_size

    def lr_find(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        method: Literal["fit", "validate", "test", "predict"] = "fit",
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> _LRFinder | None:
        """A learning-rate range test: ``num_training`` steps from ``min_lr`` to ``max_lr``.

        Returns the finder (``results``, ``suggestion()``, ``plot()``), or None under
        ``fast_dev_run``. Weights, optimizer and loop state are restored afterwards; with
        ``update_attr`` the suggestion is written to ``lr``/``learning_rate`` (or ``attr_name``)
        on the model and its hparams.
        """
        if method != "fit":
            raise MisconfigurationException("method='fit' is the only valid configuration to run lr finder.")
        _check_tuner_configuration(train_dataloaders, val_dataloaders, dataloaders, method)
        _check_lr_find_configuration(self._trainer)
        finder = LearningRateFinder(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_training, mode=mode,
                                    early_stop_threshold=early_stop_threshold, update_attr=update_attr,
                                    attr_name=attr_name)  # fmt: skip
        finder._early_exit = True
        trainer = self._trainer
        trainer.callbacks = [finder, *trainer.callbacks]
        try:
            trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
        finally:
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not finder]
        return finder.optimal_lr


def _check_tuner_configuration(train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any, method: str) -> None:
    """Lightning's rules: ``fit`` takes train/val loaders, the other methods ``dataloaders``."""
    if method not in _METHODS:
        raise ValueError(f"method {method!r} is invalid. Should be one of {_METHODS}.")
    if method == "fit":
        if dataloaders is not None:
            raise MisconfigurationException(
                f"In tuner with method={method!r}, `dataloaders` argument should be None,"
                " please consider setting `train_dataloaders` and `val_dataloaders` instead."
            )
    elif train_dataloaders is not None or val_dataloaders is not None:
        raise MisconfigurationException(
            f"In tuner with `method`={method!r}, `train_dataloaders` and `val_dataloaders`"
            " arguments should be None, please consider setting `dataloaders` instead."
        )


def _check_lr_find_configuration(trainer: Trainer) -> None:
    if any(isinstance(cb, LearningRateFinder) for cb in trainer.callbacks):
        raise ValueError(
            "Trainer is already configured with a `LearningRateFinder` callback. Please remove it if you want to use the Tuner."
        )


def _check_scale_batch_size_configuration(trainer: Trainer) -> None:
    if trainer.strategy.world_size > 1:
        raise ValueError("Tuning the batch size is currently not supported with distributed strategies.")
    if any(isinstance(cb, BatchSizeFinder) for cb in trainer.callbacks):
        raise ValueError(
            "Trainer is already configured with a `BatchSizeFinder` callback. Please remove it if you want to use the Tuner."
        )
