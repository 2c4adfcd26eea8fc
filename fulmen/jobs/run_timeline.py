"""A run's attempts, cut out of its event log: when each ran, what it cost, how it ended.

Pure over the events ``fulmen.jobs.events.read_events`` returns, for ``fulmen report``'s table:
wall time per attempt, the queue wait before it, the time its checkpoint saves held training, the
steps its resume redid, and the event that ended it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_ENDINGS = ("stopped", "failed", "finished")


@dataclasses.dataclass
class Attempt:
    """One life of a run: from a ``started`` event to its first ending (or the next start)."""

    number: int  # 1, 2, ... in the order the attempts started
    start: float
    end: float | None = None  # None while it runs (or when it vanished without an ending event)
    wait_s: float | None = None  # from the previous attempt's end to this start: queue and restart time
    saving_s: float = 0.0  # what the checkpoint saves of this attempt held training
    checkpoints: int = 0
    resumed_from: int | None = None  # the step its resume checkpoint held
    steps_redone: int = 0
    ending: dict[str, Any] | None = None  # the stopped / failed / finished event that ended it

    @property
    def wall_s(self) -> float | None:
        """Start to end (None while it runs)."""
        return None if self.end is None else max(0.0, self.end - self.start)

    @property
    def training_s(self) -> float | None:
        """Wall time less the time saves held training."""
        wall = self.wall_s
        return None if wall is None else max(0.0, wall - self.saving_s)


def attempts(events: list[dict[str, Any]]) -> list[Attempt]:
    """The attempts the events (oldest first) describe; events before the first start are skipped."""
    found: list[Attempt] = []
    current: Attempt | None = None
    last_end: float | None = None
    for event in events:
        kind, when = event.get("event"), float(event.get("time", 0.0))
        if kind == "started":
            if current is not None and current.end is None:  # never saw its end: it ended by this start
                current.end = last_end = when
            current = Attempt(len(found) + 1, when, wait_s=None if last_end is None else max(0.0, when - last_end))
            found.append(current)
        elif current is None or current.end is not None:
            continue
        elif kind == "checkpoint":
            current.checkpoints += 1
            current.saving_s += float(event.get("held_s", 0.0) or 0.0)
        elif kind == "resumed":
            current.resumed_from = event.get("step")
            current.steps_redone += int(event.get("steps_redone", 0) or 0)
        elif kind in _ENDINGS:
            current.end = last_end = when
            current.ending = event
    return found


MARKED_EVENTS = ("signal", "stopped", "failed", "requeued", "restarted", "resumed")


def marks(events: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(time, label) for each event a plot marks on its time axis: signals, stops, requeues, resumes."""
    labels = []
    for event in events:
        kind = event.get("event")
        if kind in MARKED_EVENTS:
            detail = event.get("signal") if kind == "signal" else event.get("step")
            labels.append((float(event.get("time", 0.0)), f"{kind}" + (f" {detail}" if detail is not None else "")))
    return labels
