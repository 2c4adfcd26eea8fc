"""The training side of the run's event log: resume, checkpoint, signal and stop events, and the
progress file that rank 0 refreshes every few seconds (``fulmen.jobs.events`` has the formats).

Nothing here runs unless the process belongs to a launched run (``RankInfo.run_dir``): a plain
``python train.py`` writes no events. The per-step cost is one ``time.monotonic()`` comparison;
the progress file is written on a short-lived thread so the training thread never waits on disk.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fulmen.jobs import events
from fulmen.runtime.ranks import RankInfo

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.fit_loop import FitLoop

PROGRESS_EVERY_S = 5.0


def note(rank_info: RankInfo, event: str, *, everyone: bool = False, **fields: Any) -> None:
    """Log ``event`` for this run: from global rank 0 only (job-wide events) unless ``everyone``."""
    if rank_info.run_dir and (everyone or rank_info.global_rank == 0):
        events.append_event(rank_info.run_dir, event, **fields)


def note_resumed(rank_info: RankInfo, step: int, checkpoint: str | None) -> None:
    """Rank 0, after a fit restored its training state: from which step and file, and how many
    steps the run had already done past that step (work redone; 0 when the stop was exact)."""
    if not rank_info.run_dir or rank_info.global_rank != 0:
        return
    seen = events.last_step_seen(rank_info.run_dir)
    redone = max(0, seen - step) if seen is not None else 0
    note(rank_info, "resumed", step=step, checkpoint=checkpoint, steps_redone=redone, attempt=rank_info.restart_count)


class ProgressReport:
    """Rank 0's ``progress.json``, refreshed at most every ``every_s`` seconds from the fit loop.

    ``tick()`` is called once per batch; it compares one clock reading with the next due time and
    returns. When due, ``snapshot()`` (cheap: numbers already on the host, tensors by reference)
    is handed to a thread that converts and writes it, unless the previous write is still going.
    """

    def __init__(self, run_dir: str | None, snapshot: Callable[[], dict[str, Any]],
                 every_s: float = PROGRESS_EVERY_S) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.snapshot = snapshot
        self.every_s = every_s
        self._due = time.monotonic() + every_s if run_dir else math.inf
        self._last: tuple[float, int] | None = None  # (monotonic time, step) of the previous write
        self._writer: threading.Thread | None = None

    def tick(self, step: int, force: bool = False) -> None:
        """Write the progress if it is due (``force``: now, e.g. when the fit ends), else nothing."""
        now = time.monotonic()
        if self._last is None:
            self._last = (now, step)  # the speed counts from the first batch, not from set-up
        if now < self._due and not force:
            return
        if self.run_dir is None or (self._writer is not None and self._writer.is_alive()):
            return
        self._due = now + self.every_s
        data = self.snapshot()
        data["step"] = step
        if self._last is not None and now > self._last[0]:
            data["steps_per_s"] = round((step - self._last[1]) / (now - self._last[0]), 3)
        self._last = (now, step)
        self._writer = threading.Thread(target=_write, args=(self.run_dir, data), name="fulmen-progress", daemon=True)
        self._writer.start()
        if force:
            self._writer.join()


    @contextlib.contextmanager
    def until_done(self, step: Callable[[], int]) -> Iterator[ProgressReport]:
        """This report, for the fit loop's epochs; on the way out, however the loop ends (finished,
        stopped for preemption, failed), the last step is written, so every attempt is on record."""
        try:
            yield self
        finally:
            self.tick(step(), force=True)


def fit_progress_report(loop: FitLoop, total: float) -> ProgressReport:
    """The progress report of one fit: epoch, total steps, and the checkpoint callback's monitor."""
    rank_info = loop.strategy.rank_info
    run_dir = rank_info.run_dir if rank_info.global_rank == 0 else None
    checkpoint_callback = loop.hooks.trainer.checkpoint_callback
    monitor = getattr(checkpoint_callback, "monitor", None)

    def snapshot() -> dict[str, Any]:
        value = loop.metrics.callback_metrics.get(monitor) if monitor else None
        return {"epoch": loop.progress.current_epoch, "total": total, "metric": monitor, "metric_value": value}

    return ProgressReport(run_dir, snapshot)


def _write(run_dir: str, data: dict[str, Any]) -> None:
    value = data.get("metric_value")
    if value is not None:
        try:
            data["metric_value"] = float(value)  # a tensor: the one device sync happens here, off the loop
        except (TypeError, ValueError, RuntimeError):
            data["metric_value"] = None
    total = data.get("total")
    if isinstance(total, float) and not math.isfinite(total):
        data["total"] = None
    events.write_progress(run_dir, data)
