"""The learning-rate range test (Lightning's ``pytorch_lightning.tuner.lr_finder``).

``_lr_find`` runs inside ``on_fit_start``: it takes an in-memory checkpoint, trains
``num_training`` steps while a scheduler raises the learning rate from ``min_lr`` to ``max_lr``
(exponentially or linearly), records the smoothed loss per step, stops early once the loss
diverges, then puts weights, optimizer, loop progress, callbacks and loggers back. The
suggestion is the learning rate at the steepest descent of the loss curve.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException, MissingExtraError
from fulmen.runtime.optim import LRSchedulerConfig
from fulmen.tuner.trial_state import CheckpointSnapshot, TrialSettings
from fulmen.utilities.parsing import lightning_hasattr, lightning_setattr
from fulmen.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

log = logging.getLogger(__name__)

SUPPORTED_MODES = ("linear", "exponential")


def _determine_lr_attr_name(model: LightningModule, attr_name: str = "") -> str:
    """The attribute ``update_attr`` writes: ``attr_name``, else ``lr``, else ``learning_rate``."""
    if attr_name:
        if not lightning_hasattr(model, attr_name):
            raise AttributeError(
                f"The attribute name for the learning rate was set to {attr_name}, but"
                " could not find this as a field in `model` or `model.hparams`."
            )
        return attr_name
    attr_options = ("lr", "learning_rate")
    for attr in attr_options:
        if lightning_hasattr(model, attr):
            return attr
    raise AttributeError(
        "When using the learning rate finder, either `model` or `model.hparams` should"
        f" have one of these fields: {attr_options}. If your model has a different name for the learning rate, set"
        " it with `.lr_find(attr_name=...)`."
    )


class _LRFinder:
    """The results of one range test: ``results`` ({"lr": [...], "loss": [...]}), ``suggestion()``, ``plot()``."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        if mode not in SUPPORTED_MODES:
            raise ValueError(f"`mode` should be either of {SUPPORTED_MODES}, got {mode!r}.")
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.results: dict[str, Any] = {}
        self._total_batch_idx = 0
        self._optimal_idx: int | None = None

    def _exchange_scheduler(self, trainer: Trainer) -> None:
        """Start the optimizer at ``lr_min`` and let the range scheduler step it every batch."""
        optimizers = trainer.optimization.optimizers
        if len(optimizers) != 1:
            raise MisconfigurationException(
                f"`model.configure_optimizers()` returned {len(optimizers)}, but"
                " learning rate finder only works with single optimizer"
            )
        optimizer = optimizers[0]
        for param_group in optimizer.param_groups:
            param_group["lr"] = self.lr_min
            param_group["initial_lr"] = self.lr_min
        args = (optimizer, self.lr_max, self.num_training)
        scheduler = _LinearLR(*args) if self.mode == "linear" else _ExponentialLR(*args)
        trainer.optimization.lr_scheduler_configs = [LRSchedulerConfig(scheduler, interval="step")]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """The loss against the learning rate (log scale in exponential mode); ``suggest`` marks
        the suggestion in red. Needs matplotlib (``pip install 'fulmen[plot]'``)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise MissingExtraError("matplotlib", "plot", "_LRFinder.plot()") from err
        lrs, losses = self.results["lr"], self.results["loss"]
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest:
            self.suggestion()
            if self._optimal_idx:
                ax.plot(lrs[self._optimal_idx], losses[self._optimal_idx], markersize=10, marker="o", color="red")
        if show:
            plt.show()
        return fig

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the (finite) loss falls fastest, skipping ``skip_begin`` points
        at the start and ``skip_end`` at the end; None (logged as an error) with under two points."""
        losses = torch.tensor(self.results["loss"][skip_begin:-skip_end])
        lrs = torch.tensor(self.results["lr"][skip_begin:-skip_end])
        is_finite = torch.isfinite(losses)
        losses, lrs = losses[is_finite], lrs[is_finite]
        if len(losses) < 2:
            log.error(
                "Failed to compute suggestion for learning rate because there are not enough points. Increase the loop"
                " iteration limits or the size of your dataset/dataloader."
            )
            self._optimal_idx = None
            return None
        gradients = torch.gradient(losses, spacing=[lrs])[0]
        min_grad = int(torch.argmin(gradients).item())
        idx_non_skipped = torch.arange(len(self.results["loss"]))[skip_begin:-skip_end]
        self._optimal_idx = int(idx_non_skipped[is_finite][min_grad].item())
        return self.results["lr"][self._optimal_idx]


def _lr_find(
    trainer: Trainer,
    model: LightningModule,
    min_lr: float = 1e-8,
    max_lr: float = 1,
    num_training: int = 100,
    mode: str = "exponential",
    early_stop_threshold: float | None = 4.0,
    update_attr: bool = False,
    attr_name: str = "",
) -> _LRFinder | None:
    """Run the range test on ``trainer``'s running fit and restore its state; see the module docstring."""
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping learning rate finder since `fast_dev_run` is enabled.")
        return None
    if update_attr:
        attr_name = _determine_lr_attr_name(model, attr_name)
    lr_finder = _LRFinder(mode, min_lr, max_lr, num_training)
    snapshot = CheckpointSnapshot.take(trainer)
    start_steps = trainer.global_step
    settings = TrialSettings.dump(trainer)
    recorder = _LRCallback(num_training, early_stop_threshold, progress_bar_refresh_rate=1)
    TrialSettings.apply(trainer, [recorder], max_steps=num_training + start_steps, limit_val_batches=num_training)
    finished = False
    try:
        lr_finder._exchange_scheduler(trainer)
        settings.run_fit_loop(trainer)
        if trainer.global_step != num_training + start_steps:
            rank_zero_info(f"LR finder stopped early after {trainer.global_step} steps due to diverging loss.")
        lr_finder.results.update({"lr": recorder.lrs, "loss": recorder.losses})
        lr_finder._total_batch_idx = trainer.fit_loop.total_batch_idx
        lr_finder.results = trainer.strategy.broadcast(lr_finder.results)
        finished = True
    finally:
        recorder.close()
        settings.restore(trainer)
        snapshot.restore(trainer)
    if update_attr and finished:
        lr = lr_finder.suggestion()
        if lr is not None:
            lightning_setattr(model, attr_name, lr)
            for optimizer in trainer.optimization.optimizers:
                for param_group in optimizer.param_groups:
                    param_group["lr"] = lr
            rank_zero_info(f"Learning rate set to {lr}")
    return lr_finder


class _LRCallback(Callback):
    """Records the learning rate before and the smoothed loss after each training batch, and
    stops the search once the smoothed loss exceeds ``early_stop_threshold`` times the best."""

    def __init__(self, num_training: int, early_stop_threshold: float | None = 4.0,
                 progress_bar_refresh_rate: int = 0, beta: float = 0.98) -> None:  # fmt: skip
        self.num_training = num_training
        self.early_stop_threshold = early_stop_threshold
        self.beta = beta
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.avg_loss = 0.0
        self.best_loss = 0.0
        self.progress_bar_refresh_rate = progress_bar_refresh_rate
        self.progress_bar: Any = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if self.progress_bar_refresh_rate and self.progress_bar is None and trainer.is_global_zero:
            from tqdm import tqdm

            self.progress_bar = tqdm(desc="Finding best initial lr", total=self.num_training)
        self.lrs.append(trainer.lr_scheduler_configs[0].scheduler.lr[0])

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if not outputs:
            self.losses.append(float("nan"))
            return
        if self.progress_bar:
            self.progress_bar.update()
        loss_tensor = outputs if isinstance(outputs, torch.Tensor) else outputs["loss"]
        current_loss = loss_tensor.item()
        current_step = trainer.global_step
        self.avg_loss = self.beta * self.avg_loss + (1 - self.beta) * current_loss
        smoothed_loss = self.avg_loss / (1 - self.beta ** (current_step + 1))
        threshold = self.early_stop_threshold
        if threshold is not None and current_step > 1 and smoothed_loss > threshold * self.best_loss:
            trainer.should_stop = True
            self.close()
        trainer.should_stop = trainer.strategy.broadcast(trainer.should_stop)
        if smoothed_loss < self.best_loss or current_step == 1:
            self.best_loss = smoothed_loss
        self.losses.append(smoothed_loss)

    def close(self) -> None:
        """Close the search's progress bar (once)."""
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None


class _LinearLR(LRScheduler):
    """Raises the learning rate linearly from the optimizer's to ``end_lr`` over ``num_iter`` steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, end_lr: float, num_iter: int, last_epoch: int = -1) -> None:
        self.end_lr = end_lr
        self.num_iter = num_iter
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        r = (self.last_epoch + 1) / self.num_iter
        val = [b + r * (self.end_lr - b) for b in self.base_lrs] if self.last_epoch > 0 else list(self.base_lrs)
        self._lr = val
        return val

    @property
    def lr(self) -> list[float]:
        return self._lr


class _ExponentialLR(LRScheduler):
    """Raises the learning rate exponentially from the optimizer's to ``end_lr`` over ``num_iter`` steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, end_lr: float, num_iter: int, last_epoch: int = -1) -> None:
        self.end_lr = end_lr
        self.num_iter = num_iter
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        r = (self.last_epoch + 1) / self.num_iter
        val = [b * (self.end_lr / b) ** r for b in self.base_lrs] if self.last_epoch > 0 else list(self.base_lrs)
        self._lr = val
        return val

    @property
    def lr(self) -> list[float]:
        return self._lr
