"""``DeviceStatsMonitor``: send the device's statistics to the loggers around every logged batch.

Keys are Lightning's: ``DeviceStatsMonitor.<hook>/<stat>`` (the separator is each logger's
``group_separator``), for ``on_{train,validation,test}_batch_{start,end}``. On CPU the stats
are ``cpu_percent``, ``cpu_vm_percent`` and ``cpu_swap_percent``; on CUDA they are
``torch.cuda.memory_stats`` (``allocated_bytes.all.current``, ...). A batch is logged when
Lightning would log its metrics: in training when the next logger step is a multiple of
``log_every_n_steps`` (or a stop was requested), in evaluation when the count of batches of
this evaluation run is; the step is the training step the loggers are at. The CPU figures
come from psutil, as in Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.errors import MisconfigurationException

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

__all__ = ["DeviceStatsMonitor"]


class DeviceStatsMonitor(Callback):
    """Log device statistics (CPU: psutil's figures; CUDA: the allocator's counters) to the loggers.

    Args:
        cpu_stats: ``None`` logs the CPU's figures only when training on CPU; ``True`` adds them
            on any accelerator; ``False`` never logs them (on CPU it then logs nothing).
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        if cpu_stats is not None and not isinstance(cpu_stats, bool):
            raise ValueError(
                f"DeviceStatsMonitor(cpu_stats={cpu_stats!r}): expected None, True or False.\n"
                "HINT: None logs CPU stats only on a CPU run, True always, False never."
            )
        self._cpu_stats = cpu_stats
        self._eval_batches = 0  # batches of the current evaluation run (Lightning's batch_progress.ready)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException(
                "Cannot use `DeviceStatsMonitor` callback with `Trainer(logger=False)`.\n"
                "HINT: give the Trainer a logger (the default, or logger=CSVLogger(...)), or remove the callback."
            )
        if self._cpu_stats is None and trainer.strategy.root_device.type == "cpu":
            from fulmen.utilities.device_stats import get_cpu_stats

            get_cpu_stats()  # raises here, once, without psutil; and starts its CPU-time interval

    def _log_device_stats(self, trainer: Trainer, key: str, step_to_check: int) -> None:
        every = trainer.log_every_n_steps
        if not every or (step_to_check % every != 0 and not trainer.should_stop):
            return
        device = trainer.strategy.root_device
        if self._cpu_stats is False and device.type == "cpu":
            return
        stats = dict(trainer.accelerator.get_device_stats(device))
        if self._cpu_stats and device.type != "cpu":
            from fulmen.utilities.device_stats import get_cpu_stats

            stats.update(get_cpu_stats())
        prefix = f"{type(self).__qualname__}.{key}"
        step = trainer.progress.batches_that_stepped
        for logger in trainer.loggers:
            separator = logger.group_separator
            logger.log_metrics({f"{prefix}{separator}{name}": value for name, value in stats.items()}, step=step)

    def _train_step_to_check(self, trainer: Trainer) -> int:
        # + 1: checked before the batch's optimizer step is counted (Lightning's should_update_logs)
        return trainer.progress.batches_that_stepped + 1

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._log_device_stats(trainer, "on_train_batch_start", self._train_step_to_check(trainer))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._log_device_stats(trainer, "on_train_batch_end", self._train_step_to_check(trainer))

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_batches = 0

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batches += 1
        self._log_device_stats(trainer, "on_validation_batch_start", self._eval_batches)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._log_device_stats(trainer, "on_validation_batch_end", self._eval_batches)

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batches += 1
        self._log_device_stats(trainer, "on_test_batch_start", self._eval_batches)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._log_device_stats(trainer, "on_test_batch_end", self._eval_batches)
