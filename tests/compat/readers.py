"""Read back what a logger wrote, the way a user would (csv module, TensorBoard's reader)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tests.compat.normalise import plain


def csv_rows(path: Path) -> list[list[str]]:
    """metrics.csv as raw text cells, header first."""
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def tensorboard_scalars(log_dir: str) -> dict[str, list[list[Any]]]:
    """tag -> [[step, value], ...] as TensorBoard reads them back from the tfevents files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(log_dir)
    events.Reload()
    return {
        tag: [[event.step, plain(event.value)] for event in events.Scalars(tag)]
        for tag in sorted(events.Tags()["scalars"])
    }
