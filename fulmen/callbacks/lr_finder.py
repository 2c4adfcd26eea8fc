"""``LearningRateFinder``: the learning-rate range test at fit start (Lightning's callback).

The search itself is ``fulmen.tuner.lr_finder`` (imported when the fit starts, so the callback
costs nothing until then); ``Tuner.lr_find`` runs this callback with ``_early_exit`` set, which
ends that fit right after the search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.errors import _TunerExitException
from fulmen.utilities.seed import isolate_rng

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

SUPPORTED_MODES = ("linear", "exponential")


class LearningRateFinder(Callback):
    """Find a good initial learning rate before training (and, with ``update_attr``, use it).

    ``optimal_lr`` holds the finder object after the search (``results``, ``suggestion()``,
    ``plot()``). The global RNG states are as they were before the search.
    """

    SUPPORTED_MODES = SUPPORTED_MODES

    def __init__(
        self,
        min_lr: float = 1e-8,
        max_lr: float = 1,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        update_attr: bool = True,
        attr_name: str = "",
    ) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"`mode` should be either of {self.SUPPORTED_MODES}")
        self._min_lr = min_lr
        self._max_lr = max_lr
        self._num_training_steps = num_training_steps
        self._mode = mode
        self._early_stop_threshold = early_stop_threshold
        self._update_attr = update_attr
        self._attr_name = attr_name
        self._early_exit = False
        self.optimal_lr: Any = None

    def lr_find(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the search on this fit and keep its result in ``optimal_lr``."""
        from fulmen.tuner.lr_finder import _lr_find

        with isolate_rng():
            self.optimal_lr = _lr_find(
                trainer,
                pl_module,
                min_lr=self._min_lr,
                max_lr=self._max_lr,
                num_training=self._num_training_steps,
                mode=self._mode,
                early_stop_threshold=self._early_stop_threshold,
                update_attr=self._update_attr,
                attr_name=self._attr_name,
            )
        if self._early_exit:
            raise _TunerExitException()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.lr_find(trainer, pl_module)
