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

from fulmen.core.callback import Callback
from fulmen.utilities.rank_zero import rank_zero_debug, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.callbacks._tqdm import Tqdm

__all__ = ["ProgressBar", "TQDMProgressBar", "get_standard_metrics"]


def _stage(trainer: Any) -> str | None:
    """``trainer.state.fn`` as a plain string ("fit", "validate", "test", "predict")."""
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return getattr(fn, "value", fn)


def _sanity_val_batches(trainer: Any) -> Any:
    """``trainer.num_sanity_val_batches``, or the same derived from ``num_sanity_val_steps``."""
    batches = getattr(trainer, "num_sanity_val_batches", None)
    if batches is not None:
        return batches
    steps = getattr(trainer, "num_sanity_val_steps", None)
    if steps is None:
        return trainer.num_val_batches
    limit = float("inf") if steps == -1 else steps
    val = trainer.num_val_batches
    return [min(n, limit) for n in val] if isinstance(val, (list, tuple)) else min(val, limit)


class ProgressBar(Callback):
    """Base class for progress bars: bookkeeping of totals and the metrics to display."""

    def __init__(self) -> None:
        self._trainer: Any = None
        self._current_eval_dataloader_idx: int | None = None

    @property
    def trainer(self) -> Any:
        if self._trainer is None:
            raise TypeError(
                f"The `{type(self).__name__}._trainer` reference has not been set yet.\n"
                "HINT: the Trainer sets it in setup(); pass the progress bar in Trainer(callbacks=[...])."
            )
        return self._trainer

    @property
    def sanity_check_description(self) -> str:
        return "Sanity Checking"

    @property
    def train_description(self) -> str:
        return "Training"

    @property
    def validation_description(self) -> str:
        return "Validation"

    @property
    def test_description(self) -> str:
        return "Testing"

    @property
    def predict_description(self) -> str:
        return "Predicting"

    @property
    def total_train_batches(self) -> int | float:
        """Training batches in this epoch (``inf`` for an iterable without length).

        With ``max_epochs=-1`` and ``max_steps`` set, the steps left cap it, so the last epoch's
        bar ends where training does.
        """
        trainer = self.trainer
        max_steps = getattr(trainer, "max_steps", None)
        if getattr(trainer, "max_epochs", None) == -1 and max_steps is not None and max_steps > 0:
            return min(trainer.num_training_batches, max_steps - trainer.global_step)
        return trainer.num_training_batches

    def _eval_total(self, batches: Any) -> int | float:
        if isinstance(batches, (list, tuple)):
            idx = self._current_eval_dataloader_idx or 0
            return batches[idx] if idx < len(batches) else 0
        return batches

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        trainer = self.trainer
        batches = _sanity_val_batches(trainer) if trainer.sanity_checking else trainer.num_val_batches
        return self._eval_total(batches)

    @property
    def total_test_batches_current_dataloader(self) -> int | float:
        return self._eval_total(self.trainer.num_test_batches)

    @property
    def total_predict_batches_current_dataloader(self) -> int | float:
        return self._eval_total(self.trainer.num_predict_batches)

    @property
    def total_val_batches(self) -> int | float:
        """Validation batches over all validation dataloaders."""
        batches = self.trainer.num_val_batches
        return sum(batches) if isinstance(batches, (list, tuple)) else batches

    def has_dataloader_changed(self, dataloader_idx: int) -> bool:
        old = self._current_eval_dataloader_idx
        self._current_eval_dataloader_idx = dataloader_idx
        return old != dataloader_idx

    def reset_dataloader_idx_tracker(self) -> None:
        self._current_eval_dataloader_idx = None

    def disable(self) -> None:
        """Stop drawing (called on non-zero ranks); subclasses must implement it."""
        raise NotImplementedError

    def enable(self) -> None:
        """Resume drawing; subclasses must implement it."""
        raise NotImplementedError

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print without breaking the bars (``LightningModule.print`` goes through here)."""
        print(*args, **kwargs)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._trainer = trainer
        if not trainer.is_global_zero:
            self.disable()

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, int | str | float | dict[str, float]]:
        """What the postfix shows: ``v_num`` plus ``trainer.progress_bar_metrics``. Override to change it."""
        standard = get_standard_metrics(trainer)
        pbar_metrics = trainer.progress_bar_metrics
        duplicates = [key for key in standard if key in pbar_metrics]
        if duplicates:
            rank_zero_warn(
                f"The progress bar already tracks a metric with the name(s) '{', '.join(duplicates)}' and"
                f" `self.log('{duplicates[0]}', ..., prog_bar=True)` will overwrite this value. "
                " If this is undesired, change the name or override `get_metrics()` in the progress bar callback.",
            )
        return {**standard, **pbar_metrics}


def get_standard_metrics(trainer: Any) -> dict[str, int | str]:
    """``{"v_num": version}`` when the trainer has loggers (the last 4 characters of a string version)."""
    loggers = getattr(trainer, "loggers", None) or []
    if not loggers:
        return {}
    from fulmen.loggers.utilities import logger_version

    version = logger_version(loggers)
    if version in ("", None):
        return {}
    if isinstance(version, str):
        version = version[-4:]
    return {"v_num": version}


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

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self.val_progress_bar = self.init_sanity_tqdm()
        self.train_progress_bar = self._new_bar(disable=True)  # placeholder until on_train_start

    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None:
        self.val_progress_bar.close()
        self.train_progress_bar.close()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        total = convert_inf(self.total_train_batches)
        bar.reset()
        bar.total = total
        bar.initial = 0
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = batch_idx + 1
        bar = self._train_progress_bar
        if bar is not None and self._should_update(n, bar.total):
            _update_n(bar, n)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
        if self._leave:
            self.train_progress_bar.close()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.train_progress_bar.close()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.val_progress_bar = self.init_validation_tqdm()

    def on_validation_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
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
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        n = batch_idx + 1
        if self._should_update(n, self.val_progress_bar.total):
            _update_n(self.val_progress_bar, n)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        self.val_progress_bar.close()
        self.reset_dataloader_idx_tracker()
        train_bar = self._train_progress_bar
        # Reading metrics can sync the device: skip it when nothing is drawn (other ranks).
        if train_bar is not None and not train_bar.disable and _stage(trainer) == "fit":
            train_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self.test_progress_bar = self.init_test_tqdm()

    def on_test_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
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
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        n = batch_idx + 1
        if self._should_update(n, self.test_progress_bar.total):
            _update_n(self.test_progress_bar, n)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self.test_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self.predict_progress_bar = self.init_predict_tqdm()

    def on_predict_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
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
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        n = batch_idx + 1
        if self._should_update(n, self.predict_progress_bar.total):
            _update_n(self.predict_progress_bar, n)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.predict_progress_bar.close()
        self.reset_dataloader_idx_tracker()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
