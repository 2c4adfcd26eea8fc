"""``BatchSizeFinder``: the batch-size search at the start of fit/validate/test/predict
(Lightning's callback).

The search itself is ``fulmen.tuner.batch_size_scaling`` (imported when the stage starts, so the
callback costs nothing until then); ``Tuner.scale_batch_size`` runs this callback with
``_early_exit`` set, which ends that run right after the search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException, _TunerExitException
from fulmen.utilities.parsing import lightning_hasattr
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


class BatchSizeFinder(Callback):
    """Find the largest batch size that fits in memory and write it to ``batch_arg_name``.

    The batch size is read from and written to the module, its ``hparams`` and the datamodule,
    so the loaders must be built by ``*_dataloader()`` hooks that read it (not passed to
    ``fit``). ``optimal_batch_size`` holds the result.
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(
        self,
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        batch_arg_name: str = "batch_size",
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"`mode` should be either of {self.SUPPORTED_MODES}")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"`margin` should be between 0 and 1. Found margin={margin}")
        self.optimal_batch_size: int | None = init_val
        self._mode = mode
        self._steps_per_trial = steps_per_trial
        self._init_val = init_val
        self._max_trials = max_trials
        self._batch_arg_name = batch_arg_name
        self._margin = margin
        self._max_val = max_val
        self._early_exit = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str | None = None) -> None:
        if trainer.strategy.world_size > 1:
            raise MisconfigurationException("The Batch size finder is not supported with distributed strategies.")
        kind = "train" if stage in (None, "fit") else trainer.state.fn.stage.dataloader_prefix
        if trainer.data_sources.passed_directly(kind):
            raise MisconfigurationException(
                "The Batch size finder cannot be used with dataloaders passed directly to `.fit()`. Please disable"
                " the feature or incorporate the dataloader into your LightningModule or LightningDataModule."
            )
        name = self._batch_arg_name
        if not lightning_hasattr(pl_module, name):
            raise MisconfigurationException(f"Field {name} not found in `model`, `datamodule`, nor their `hparams` attributes.")
        hparams: Any = getattr(pl_module, "hparams", None)
        if hasattr(pl_module, name) and hparams is not None and name in hparams:
            rank_zero_warn(
                f"Field `model.{name}` and `model.hparams.{name}` are mutually exclusive! `model.{name}` will be"
                " used as the initial batch size for scaling. If this is not the intended behavior, please remove"
                " either one."
            )

    def scale_batch_size(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the search on this run and keep the size found in ``optimal_batch_size``."""
        from fulmen.tuner.batch_size_scaling import _scale_batch_size

        self.optimal_batch_size = _scale_batch_size(
            trainer, self._mode, self._steps_per_trial, self._init_val, self._max_trials, self._batch_arg_name,
            self._margin, self._max_val,
        )  # fmt: skip
        if self._early_exit:
            raise _TunerExitException()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.scale_batch_size(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "validate":
            return
        self.scale_batch_size(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.scale_batch_size(trainer, pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.scale_batch_size(trainer, pl_module)
