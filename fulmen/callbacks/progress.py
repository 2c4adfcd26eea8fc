"""Progress bars: the ``ProgressBar`` base and the default ``TQDMProgressBar`` (Lightning 2.x).

What the terminal shows during ``fit``::

    Sanity Checking DataLoader 0: 100%|██████| 2/2 [00:00<00:00, 150.2it/s]
    Epoch 0:  50%|█████     | 16/32 [00:00<00:00, 210.5it/s, v_num=3, train_loss=0.412]
    Validation DataLoader 0:  40%|████      | 4/10 [00:00<00:00, 380.1it/s]

The train bar's postfix is ``get_metrics()``: ``v_num`` (the logger version) plus everything
logged with ``prog_bar=True`` (``trainer.progress_bar_metrics``). Bars update every
``refresh_rate`` batches (and on the last one), so a large rate keeps the per-step cost near
zero; bars are disabled on every rank but global zero. ``tqdm`` is imported when the first bar
is created, not when this module is.
"""

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, Any

from fulmen.callbacks import rich_progress
from fulmen.callbacks.progress_bar import ProgressBar, _stage, get_standard_metrics
from fulmen.utilities.rank_zero import rank_zero_debug

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.callbacks._tqdm import Tqdm
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

__all__ = ["ProgressBar", "TQDMProgressBar", "get_standard_metrics"]

# Lightning's import path ``callbacks.progress.rich_progress`` (there a package, here a module):
# registered under that name so ``from ...progress.rich_progress import RichProgressBarTheme``
# works; the module imports rich only when a bar starts drawing.
sys.modules.setdefault(f"{__name__}.rich_progress", rich_progress)


def convert_inf(x: int | float | None) -> int | float | None:
    """tqdm cannot show an infinite or NaN total; it wants None (an open-ended bar)."""
    if x is None or math.isinf(x) or math.isnan(x):
        return None
    return x


def _update_n(bar: Tqdm, value: int) -> None:
    if not bar.disable:
        bar.n = value
        bar.refresh()


class TQDMProgressBar(ProgressBar):
    """The default progress bar: tqdm bars on stdout for sanity check, training, validation, test, predict.

    Args:
        refresh_rate: redraw every this many batches (0 disables the bars).
        process_position: offset the bars by this many lines (several bars in one terminal).
        leave: keep one finished bar per epoch on screen instead of reusing a single bar.
    """

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__()
        if refresh_rate < 0:
            raise ValueError(
                f"TQDMProgressBar(refresh_rate={refresh_rate}) must be >= 0.\n"
                "HINT: 1 redraws every batch, N every N batches, 0 disables the bar."
            )
        self._refresh_rate = self._resolve_refresh_rate(refresh_rate)
        self._process_position = process_position
        self._enabled = True
        self._leave = leave
        self._train_progress_bar: Tqdm | None = None
        self._val_progress_bar: Tqdm | None = None
        self._test_progress_bar: Tqdm | None = None
        self._predict_progress_bar: Tqdm | None = None

    def __getstate__(self) -> dict[str, Any]:
        # tqdm objects hold a file handle and a lock: drop them when the trainer is pickled.
        return {k: (None if k.endswith("_progress_bar") else v) for k, v in vars(self).items()}

    def _bar(self, attribute: str) -> Tqdm:
        bar = getattr(self, attribute)
        if bar is None:
            raise TypeError(f"The `{type(self).__name__}.{attribute}` reference has not been set yet.")
        return bar

    @property
    def train_progress_bar(self) -> Tqdm:
        return self._bar("_train_progress_bar")

    @train_progress_bar.setter
    def train_progress_bar(self, bar: Tqdm) -> None:
        self._train_progress_bar = bar

    @property
    def val_progress_bar(self) -> Tqdm:
        return self._bar("_val_progress_bar")

    @val_progress_bar.setter
    def val_progress_bar(self, bar: Tqdm) -> None:
        self._val_progress_bar = bar

    @property
    def test_progress_bar(self) -> Tqdm:
        return self._bar("_test_progress_bar")

    @test_progress_bar.setter
    def test_progress_bar(self, bar: Tqdm) -> None:
        self._test_progress_bar = bar

    @property
    def predict_progress_bar(self) -> Tqdm:
        return self._bar("_predict_progress_bar")

    @predict_progress_bar.setter
    def predict_progress_bar(self, bar: Tqdm) -> None:
        self._predict_progress_bar = bar

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def process_position(self) -> int:
        return self._process_position

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.refresh_rate > 0

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    # -- bar factories (override these to customise a bar) ------------------------------------

    def _new_bar(self, **kwargs: Any) -> Tqdm:
        from fulmen.callbacks._tqdm import Tqdm

        kwargs.setdefault("disable", self.is_disabled)
        return Tqdm(dynamic_ncols=True, file=sys.stdout, bar_format=self.BAR_FORMAT, **kwargs)

    def init_sanity_tqdm(self) -> Tqdm:
        return self._new_bar(desc=self.sanity_check_description, position=2 * self.process_position, leave=False)

    def init_train_tqdm(self) -> Tqdm:
        return self._new_bar(
            desc=self.train_description, position=2 * self.process_position, leave=True, smoothing=0
        )

    def init_predict_tqdm(self) -> Tqdm:
        return self._new_bar(
            desc=self.predict_description, position=2 * self.process_position, leave=True, smoothing=0
        )

    def init_validation_tqdm(self) -> Tqdm:
        # trainer.validate() has no train bar above the validation bar.
        has_main_bar = _stage(self.trainer) != "validate"
        return self._new_bar(
            desc=self.validation_description,
            position=2 * self.process_position + has_main_bar,
            leave=not has_main_bar,
        )

    def init_test_tqdm(self) -> Tqdm:
        return self._new_bar(desc="Testing", position=2 * self.process_position, leave=True)

    # -- hooks -------------------------------------------------------------------------------

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar = self.init_sanity_tqdm()
        self.train_progress_bar = self._new_bar(disable=True)  # placeholder until on_train_start

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar.close()
        self.train_progress_bar.close()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        fit_loop = getattr(trainer, "fit_loop", None)
        if getattr(fit_loop, "restarted_mid_epoch", False):
            # the resumed epoch gets no on_train_epoch_start: without this the bar would read
            # "Training: k/?" (as Lightning's does) instead of "Epoch E: k/N"
            self._start_train_epoch(trainer)
            _update_n(self.train_progress_bar, fit_loop.batch_idx)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self._start_train_epoch(trainer)

    def _start_train_epoch(self, trainer: Trainer) -> None:
        bar = self.train_progress_bar
        total = convert_inf(self.total_train_batches)
        bar.reset()
        bar.total = total
        bar.initial = 0
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = batch_idx + 1
        bar = self._train_progress_bar
        if bar is not None and self._should_update(n, bar.total):
            _update_n(bar, n)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
        if self._leave:
            self.train_progress_bar.close()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar.close()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_progress_bar = self.init_validation_tqdm()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.val_progress_bar
        total = convert_inf(self.total_val_batches_current_dataloader)
        bar.reset()
        bar.total = total
        bar.initial = 0
        desc = self.sanity_check_description if trainer.sanity_checking else self.validation_description
        bar.set_description(f"{desc} DataLoader {dataloader_idx}")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        n = batch_idx + 1
        if self._should_update(n, self.val_progress_bar.total):
            _update_n(self.val_progress_bar, n)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar.close()
        self.reset_dataloader_idx_tracker()
        train_bar = self._train_progress_bar
        # Reading metrics can sync the device: skip it when nothing is drawn (other ranks).
        if train_bar is not None and not train_bar.disable and _stage(trainer) == "fit":
            train_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_progress_bar = self.init_test_tqdm()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.test_progress_bar
        total = convert_inf(self.total_test_batches_current_dataloader)
        bar.reset()
        bar.total = total
        bar.initial = 0
        bar.set_description(f"{self.test_description} DataLoader {dataloader_idx}")

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        n = batch_idx + 1
        if self._should_update(n, self.test_progress_bar.total):
            _update_n(self.test_progress_bar, n)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.test_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.predict_progress_bar = self.init_predict_tqdm()

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.has_dataloader_changed(dataloader_idx):
            return
        bar = self.predict_progress_bar
        total = convert_inf(self.total_predict_batches_current_dataloader)
        bar.reset()
        bar.total = total
        bar.initial = 0
        bar.set_description(f"{self.predict_description} DataLoader {dataloader_idx}")

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        n = batch_idx + 1
        if self._should_update(n, self.predict_progress_bar.total):
            _update_n(self.predict_progress_bar, n)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.predict_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Close open bars so the traceback starts on a clean line.
        for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar,
                    self._predict_progress_bar):  # fmt: skip
            if bar is not None:
                bar.close()

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Write above the active bar (so the bar is redrawn below the text), or nowhere when disabled."""
        for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar,
                    self._predict_progress_bar):  # fmt: skip
            if bar is not None and not bar.disable:
                bar.write(sep.join(map(str, args)), **kwargs)
                return

    def _should_update(self, current: int, total: int | float | None) -> bool:
        return self.is_enabled and (current % self.refresh_rate == 0 or current == total)

    @staticmethod
    def _resolve_refresh_rate(refresh_rate: int) -> int:
        if os.getenv("COLAB_GPU") and refresh_rate == 1:
            # A refresh every batch floods Colab's output cell and can crash it.
            rank_zero_debug("Using a higher refresh rate on Colab. Setting it to `20`")
            return 20
        if "TQDM_MINITERS" in os.environ:  # tqdm's own knob for "redraw at most every N iterations"
            return max(int(os.environ["TQDM_MINITERS"]), refresh_rate)
        return refresh_rate


def __getattr__(name: str) -> Any:
    # ``from fulmen.callbacks.progress import Tqdm`` works without importing tqdm at module import.
    if name == "Tqdm":
        from fulmen.callbacks._tqdm import Tqdm

        return Tqdm
    if name in ("RichProgressBar", "RichProgressBarTheme"):  # Lightning's ``callbacks.progress`` has them
        from fulmen.callbacks import rich_progress

        return getattr(rich_progress, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
