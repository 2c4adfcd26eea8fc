"""LearningRateMonitor: log each optimizer's learning rate (and momentum, weight decay).

Names follow Lightning so dashboards keep working: ``lr-<OptimizerClass>`` (or the scheduler
config's ``name``), ``-1``, ``-2`` ... for further optimizers of the same class, ``/pg<N>``
(or the param group's ``name``) when an optimizer has several parameter groups, and
``-momentum`` / ``-weight_decay`` suffixes. Optimizers with a scheduler are logged on the
scheduler's interval; optimizers without one on every logging step.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.optim import Optimizer

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException
from fulmen.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer


def _unwrap(optimizer: Any) -> Optimizer:
    # the Trainer hands out wrapped optimizers; names come from the real class
    return optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer


class LearningRateMonitor(Callback):
    """Log learning rates to the Trainer's loggers.

    Args:
        logging_interval: ``"step"``, ``"epoch"`` or None (each scheduler on its own interval).
        log_momentum: also log momentum (``betas[0]`` for Adam-like optimizers).
        log_weight_decay: also log weight decay.
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = None,
        log_momentum: bool = False,
        log_weight_decay: bool = False,
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException(
                f"logging_interval should be `step` or `epoch` or `None`, got {logging_interval!r}."
            )
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.loggers:
            raise MisconfigurationException(
                "Cannot use `LearningRateMonitor` callback with `Trainer` that has no logger.\n"
                "HINT: remove logger=False from the Trainer, or drop the LearningRateMonitor."
            )
        if self.log_momentum:
            optimizers = [c.scheduler.optimizer for c in trainer.lr_scheduler_configs] or [
                _unwrap(o) for o in trainer.optimizers
            ]
            if any("momentum" not in o.defaults and "betas" not in o.defaults for o in optimizers):
                rank_zero_warn(
                    "You have set log_momentum=True, but some optimizers do not have momentum. "
                    "This will log a value 0 for the momentum.",
                    category=RuntimeWarning,
                )
        names = [name for _, (_, group_names) in self._named_optimizers(trainer) for name in group_names]
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.logging_interval == "epoch" or not self._should_update_logs(trainer):
            return
        self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    @staticmethod
    def _logging_step(trainer: Trainer) -> int:
        # Lightning logs against the number of batches that stepped an optimizer, which differs
        # from global_step when several optimizers step per batch (manual optimization)
        return int(getattr(getattr(trainer, "fit_loop", None), "batches_that_stepped", trainer.global_step))

    def _should_update_logs(self, trainer: Trainer) -> bool:
        every = max(1, int(getattr(trainer, "log_every_n_steps", 50)))
        return (self._logging_step(trainer) + 1) % every == 0 or bool(getattr(trainer, "should_stop", False))

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats = self._extract_stats(trainer, interval)
        if stats:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=self._logging_step(trainer))

    def _extract_stats(self, trainer: Trainer, interval: str) -> dict[str, float]:
        """Current values of every optimizer due at ``interval`` (``"any"``: all of them)."""
        stats: dict[str, float] = {}
        for config, (optimizer, names) in self._named_optimizers(trainer):
            if config is not None and interval not in (config.interval, "any"):
                continue
            use_betas = "betas" in optimizer.defaults
            for group, name in zip(optimizer.param_groups, names):
                stats[name] = group["lr"]
                self.lrs.setdefault(name, []).append(group["lr"])
                if self.log_momentum:
                    momentum = group["betas"][0] if use_betas else group.get("momentum", 0)
                    stats[f"{name}-momentum"] = self.last_momentum_values[f"{name}-momentum"] = momentum
                if self.log_weight_decay:
                    decay = group["weight_decay"]
                    stats[f"{name}-weight_decay"] = self.last_weight_decay_values[f"{name}-weight_decay"] = decay
        device = getattr(getattr(trainer, "strategy", None), "root_device", None)
        trainer.callback_metrics.update({k: torch.tensor(v, device=device) for k, v in stats.items()})
        return stats

    def _named_optimizers(self, trainer: Trainer) -> list[tuple[Any, tuple[Optimizer, list[str]]]]:
        """(scheduler config or None, (optimizer, one name per param group)) in Lightning's order."""
        seen: list[Optimizer] = []
        seen_types: defaultdict[type, int] = defaultdict(int)
        named: list[tuple[Any, tuple[Optimizer, list[str]]]] = []
        for config in trainer.lr_scheduler_configs:
            optimizer = config.scheduler.optimizer
            name = config.name if config.name is not None else "lr-" + type(optimizer).__name__
            named.append((config, (optimizer, self._names(optimizer, name, seen, seen_types, config.name is None))))
        for wrapped in trainer.optimizers:
            optimizer = _unwrap(wrapped)
            if optimizer in seen:
                continue
            name = "lr-" + type(optimizer).__name__
            named.append((None, (optimizer, self._names(optimizer, name, seen, seen_types, True))))
        return named

    @staticmethod
    def _names(
        optimizer: Optimizer, name: str, seen: list[Optimizer], seen_types: defaultdict[type, int], count_type: bool
    ) -> list[str]:
        seen.append(optimizer)
        if count_type:
            seen_types[type(optimizer)] += 1
        groups = optimizer.param_groups
        group_names = [g.get("name", f"pg{i}") for i, g in enumerate(groups, start=1)]
        duplicates = {n for n in group_names if group_names.count(n) > 1}
        if duplicates:
            raise MisconfigurationException(
                "A single `Optimizer` cannot have multiple parameter groups with identical `name` values. "
                f"{name} has duplicated parameter group names {duplicates}.\nHINT: give each param group a unique 'name'."
            )
        count = seen_types.get(type(optimizer), 0)
        if count > 1:
            name = f"{name}-{count - 1}"
        if len(groups) > 1:
            return [f"{name}/{group_names[i]}" for i in range(len(groups))]
        group_name = groups[0].get("name")
        return [f"{name}/{group_name}" if group_name else name]
