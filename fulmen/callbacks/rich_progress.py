"""``RichProgressBar``: Lightning 2.6's progress bar drawn with ``rich`` (the optional extra ``fulmen[rich]``).

Totals, descriptions, the dataloader tracking and the metrics come from the ``ProgressBar``
base the TQDM bar uses too; this module only draws. ``rich`` is imported when a bar starts
drawing (``rich_columns``), never when this module is imported, so ``import fulmen`` and a
run without this bar never load it. In a ``Trainer``'s callbacks it replaces the default
TQDM bar; only global rank zero draws.

On a console that is not a terminal (a log file, ``launch``'s rank-0 output) rich draws
nothing while the bar runs and prints the finished bar once when it stops: one line per
stage, or per epoch with ``leave=True``, and no control characters.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fulmen.callbacks.progress_bar import ProgressBar, _stage
from fulmen.errors import MissingExtraError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.progress import Task, TaskID
    from rich.style import Style

    from fulmen.callbacks.rich_columns import CustomProgress, MetricsTextColumn
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

__all__ = ["RichProgressBar", "RichProgressBarTheme", "require_rich"]


def require_rich(owner: str) -> None:
    """Raise the error naming the ``fulmen[rich]`` extra when ``rich`` is not installed."""
    if importlib.util.find_spec("rich") is None:
        raise MissingExtraError("rich", "rich", f"`{owner}`")


@dataclass
class RichProgressBarTheme:
    """Styles of the bar's parts (rich style strings or ``rich.style.Style``), Lightning's defaults.

    ``metrics_format`` formats every metric value (``.3f``: ``v_num: 0.000``).
    """

    description: str | Style = ""
    progress_bar: str | Style = "#6206E0"
    progress_bar_finished: str | Style = "#6206E0"
    progress_bar_pulse: str | Style = "#6206E0"
    batch_progress: str | Style = ""
    time: str | Style = "dim"
    processing_speed: str | Style = "dim underline"
    metrics: str | Style = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


class RichProgressBar(ProgressBar):
    """A progress bar drawn with ``rich``.

    Args:
        refresh_rate: redraws per second (0 disables the bar).
        leave: keep each finished epoch's bar on screen.
        theme: the styles of the bar's parts.
        console_kwargs: arguments of the ``rich.console.Console`` the bar draws on.
    """

    def __init__(
        self,
        refresh_rate: int = 100,
        leave: bool = False,
        theme: RichProgressBarTheme | None = None,
        console_kwargs: dict[str, Any] | None = None,
    ) -> None:
        require_rich("RichProgressBar")
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, (int, float)) or refresh_rate < 0:
            raise ValueError(
                f"RichProgressBar(refresh_rate={refresh_rate!r}) must be a number >= 0.\n"
                "HINT: it is redraws per second (Lightning's default 100); 0 disables the bar."
            )
        super().__init__()
        self._refresh_rate = refresh_rate
        self._leave = leave
        self._console: Console | None = None
        self._console_kwargs = console_kwargs or {}
        self._enabled = True
        self.progress: CustomProgress | None = None
        self.train_progress_bar_id: TaskID | None = None
        self.val_sanity_progress_bar_id: TaskID | None = None
        self.val_progress_bar_id: TaskID | None = None
        self.test_progress_bar_id: TaskID | None = None
        self.predict_progress_bar_id: TaskID | None = None
        self._metric_component: MetricsTextColumn | None = None
        self._progress_stopped = False
        self.theme = theme if theme is not None else RichProgressBarTheme()

    @property
    def refresh_rate(self) -> float:
        return self._refresh_rate

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

    def _task(self, task_id: TaskID | None) -> Task:
        if self.progress is None or task_id is None:
            raise TypeError(f"The `{type(self).__name__}` has not drawn this bar yet.")
        return self.progress.tasks[task_id]

    @property
    def train_progress_bar(self) -> Task:
        return self._task(self.train_progress_bar_id)

    @property
    def val_sanity_check_bar(self) -> Task:
        return self._task(self.val_sanity_progress_bar_id)

    @property
    def val_progress_bar(self) -> Task:
        return self._task(self.val_progress_bar_id)

    @property
    def test_progress_bar(self) -> Task:
        return self._task(self.test_progress_bar_id)

    # -- drawing ---------------------------------------------------------------------------

    def _init_progress(self, trainer: Trainer) -> None:
        if not self.is_enabled or (self.progress is not None and not self._progress_stopped):
            return
        from rich import get_console, reconfigure

        from fulmen.callbacks.rich_columns import CustomProgress, MetricsTextColumn

        self._reset_progress_bar_ids()
        reconfigure(**self._console_kwargs)
        self._console = get_console()
        if getattr(self._console, "_live_stack", None) or getattr(self._console, "_live", None):
            self._console.clear_live()  # a display left by an interrupted run would refuse the new one
        theme = self.theme
        self._metric_component = MetricsTextColumn(trainer, theme.metrics, theme.metrics_text_delimiter, theme.metrics_format)
        self.progress = CustomProgress(
            *self.configure_columns(trainer),
            self._metric_component,
            auto_refresh=True,
            refresh_per_second=self.refresh_rate,
            disable=self.is_disabled,
            console=self._console,
        )
        self.progress.start()
        self._progress_stopped = False

    def configure_columns(self, trainer: Trainer) -> list:
        """The columns before the metrics text; override to change the layout."""
        from rich.progress import TextColumn

        from fulmen.callbacks.rich_columns import (
            BatchesProcessedColumn,
            CustomBarColumn,
            CustomTimeColumn,
            ProcessingSpeedColumn,
        )  # fmt: skip

        theme = self.theme
        return [
            TextColumn("[progress.description]{task.description}"),
            CustomBarColumn(
                complete_style=theme.progress_bar,
                finished_style=theme.progress_bar_finished,
                pulse_style=theme.progress_bar_pulse,
            ),  # fmt: skip
            BatchesProcessedColumn(style=theme.batch_progress),
            CustomTimeColumn(style=theme.time),
            ProcessingSpeedColumn(style=theme.processing_speed),
        ]

    def refresh(self, hard: bool = False) -> None:
        if self.progress:
            if hard or hasattr(sys, "ps1") or sys.flags.interactive:
                self.progress.refresh()
            else:
                self.progress.soft_refresh()

    def _add_task(self, total_batches: int | float, description: str, visible: bool = True) -> TaskID:
        assert self.progress is not None
        styled = f"[{self.theme.description}]{description}" if self.theme.description else description
        return self.progress.add_task(styled, total=total_batches, visible=visible)

    def _hide(self, task_id: TaskID | None) -> None:
        if self.progress is not None and task_id is not None:
            self.progress.update(task_id, advance=0, visible=False)

    def _update(self, task_id: TaskID | None, current: int, visible: bool = True, hard: bool = False) -> None:
        if self.progress is not None and self.is_enabled and task_id is not None:
            self.progress.update(task_id, completed=current, visible=visible)
            self.refresh(hard=hard)

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch}"
        if self.trainer.max_epochs is not None:
            description += f"/{self.trainer.max_epochs - 1}"
        # padded to the validation bar's width, so the bars do not jump when they swap
        return f"{description:{len(self.validation_description)}}"

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self._progress_stopped = True  # the next stage starts a new display

    def _reset_progress_bar_ids(self) -> None:
        self.train_progress_bar_id = None
        self.val_sanity_progress_bar_id = None
        self.val_progress_bar_id = None
        self.test_progress_bar_id = None
        self.predict_progress_bar_id = None

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        """The base's metrics with tensors turned into numbers (rich formats them on another thread)."""
        items = super().get_metrics(trainer, pl_module)
        return {key: value.item() if hasattr(value, "item") and not isinstance(value, (int, float)) else value
                for key, value in items.items()}  # fmt: skip

    def _update_metrics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and self._metric_component is not None:
            self._metric_component.update(self.get_metrics(trainer, pl_module))

    # -- hooks -----------------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._init_progress(trainer)

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._hide(self.val_sanity_progress_bar_id)
        self.refresh()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_disabled:
            return
        total_batches = self.total_train_batches
        description = self._get_train_description(trainer.current_epoch)
        if self.train_progress_bar_id is not None and self._leave:
            self._stop_progress()  # prints the finished epoch's bar and keeps it
            self._init_progress(trainer)
        if self.progress is not None:
            if self.train_progress_bar_id is None:
                self.train_progress_bar_id = self._add_task(total_batches, description)
            else:
                self.progress.reset(self.train_progress_bar_id, total=total_batches, description=description,
                                    visible=True)  # fmt: skip
        self.refresh()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.is_enabled and self.train_progress_bar_id is None:
            # a fit resumed mid-epoch gets no on_train_epoch_start
            self.train_progress_bar_id = self._add_task(
                self.total_train_batches, self._get_train_description(trainer.current_epoch)
            )
        self._update(self.train_progress_bar_id, batch_idx + 1)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def _start_eval_bar(self, dataloader_idx: int, attribute: str, total: int | float, description: str,
                        visible: bool) -> None:  # fmt: skip
        if self.is_disabled or not self.has_dataloader_changed(dataloader_idx):
            return
        self._hide(getattr(self, attribute))
        setattr(self, attribute, self._add_task(total, description, visible=visible))
        self.refresh()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking:
            attribute, description = "val_sanity_progress_bar_id", self.sanity_check_description
        else:
            attribute, description = "val_progress_bar_id", self.validation_description
        self._start_eval_bar(dataloader_idx, attribute, self.total_val_batches_current_dataloader, description, False)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self.is_enabled:
            bar = self.val_sanity_progress_bar_id if trainer.sanity_checking else self.val_progress_bar_id
            self._update(bar, batch_idx + 1)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and self.val_progress_bar_id is not None and _stage(trainer) == "fit":
            self._hide(self.val_progress_bar_id)
            self.refresh()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if _stage(trainer) == "fit":
            self._update_metrics(trainer, pl_module)
        self.reset_dataloader_idx_tracker()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        total = self.total_test_batches_current_dataloader
        self._start_eval_bar(dataloader_idx, "test_progress_bar_id", total, self.test_description, True)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self.is_enabled:
            self._update(self.test_progress_bar_id, batch_idx + 1)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        total = self.total_predict_batches_current_dataloader
        self._start_eval_bar(dataloader_idx, "predict_progress_bar_id", total, self.predict_description, True)

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self.is_enabled:
            self._update(self.predict_progress_bar_id, batch_idx + 1)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop_progress()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop_progress()  # the traceback starts on a clean line

    def __getstate__(self) -> dict[str, Any]:
        # the console and the live display hold locks and threads: drop them when pickled
        return {**vars(self), "progress": None, "_console": None}
