"""A run's events and progress turned into what ``fulmen status`` and ``fulmen events`` print.

Pure functions over the lists ``fulmen.jobs.events`` reads, so every line of the screen can be
tested with plain data. Time lost to preemption is the wall time between a stop (or failure)
and the next start, plus the work a resume redid (steps redone at the speed last measured).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

BAR_WIDTH = 30
_ENDINGS = ("stopped", "failed", "finished")


@dataclasses.dataclass
class RunSummary:
    """What the events and the progress file say about a run, one field per line of the screen."""

    attempts: int = 0  # "started" events (one per attempt: restart, requeue, relaunch)
    restarts: int = 0  # restarts/requeues of the latest launch
    restart_limit: int | None = None
    nodes: int | None = None
    ranks: int | None = None
    step: int | None = None
    total: int | None = None
    epoch: int | None = None
    steps_per_s: float | None = None
    metric: str | None = None
    metric_value: float | None = None
    progress_time: float | None = None
    last_checkpoint: dict[str, Any] | None = None  # the newest "checkpoint" event whose file exists
    gaps_s: float = 0.0  # wall time between an attempt's end and the next start
    steps_redone: int = 0
    preemptions: int = 0
    outcome: dict[str, Any] | None = None  # the latest ending event (stopped/failed/finished), if any

    @property
    def lost_s(self) -> float:
        """Time lost to preemption and restarts: gaps plus redone steps at the measured speed."""
        redone = self.steps_redone / self.steps_per_s if self.steps_per_s else 0.0
        return self.gaps_s + redone


def summarize(events: list[dict[str, Any]], progress: dict[str, Any] | None,
              exists: Callable[[str], bool] = os.path.exists) -> RunSummary:  # fmt: skip
    """Fold the events (oldest first) and the progress file into a ``RunSummary``.

    ``exists`` decides whether a saved checkpoint is still durable on disk (a file that a
    later save or the run's end removed is not offered as "last checkpoint").
    """
    summary = RunSummary()
    ended_at: float | None = None
    for event in events:
        kind, when = event.get("event"), float(event.get("time", 0.0))
        if kind == "submitted":
            summary.restart_limit = event.get("max_restarts", summary.restart_limit)
        elif kind == "started":
            summary.attempts += 1
            summary.restarts = int(event.get("attempt", 0) or 0)
            summary.restart_limit = event.get("max_restarts", summary.restart_limit)
            summary.nodes, summary.ranks = event.get("nodes", summary.nodes), event.get("ranks", summary.ranks)
            if ended_at is not None:
                summary.gaps_s += max(0.0, when - ended_at)
            ended_at, summary.outcome = None, None
        elif kind == "resumed":
            summary.steps_redone += int(event.get("steps_redone", 0) or 0)
        elif kind == "checkpoint" and event.get("path") and exists(str(event["path"])):
            summary.last_checkpoint = event
        elif kind in _ENDINGS and summary.outcome is None:  # the attempt's first ending: the first failing rank
            summary.outcome = event
            if kind != "finished":
                ended_at = when
                summary.preemptions += event.get("exit_code") == 75
    if progress:
        summary.step, summary.total, summary.epoch = progress.get("step"), progress.get("total"), progress.get("epoch")
        summary.steps_per_s, summary.progress_time = progress.get("steps_per_s"), progress.get("time")
        summary.metric, summary.metric_value = progress.get("metric"), progress.get("metric_value")
    return summary


def progress_bar(step: int, total: int | None, width: int = BAR_WIDTH) -> str:
    """``[#########.....]  1200/5000  24%`` (no bar when the total is unknown)."""
    if not total or total <= 0 or not math.isfinite(total):
        return f"{step} (total unknown)"
    done = min(1.0, step / total)
    filled = int(done * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {done:4.0%}"


def duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h02m``: short enough for one screen line."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def status_lines(summary: RunSummary, now: float | None = None, live: bool = True) -> list[str]:
    """The progress part of ``fulmen status`` (the state line comes from the backend).

    ``live``: the job may still be training (no ETA for an ended or LOST job)."""
    now = time.time() if now is None else now
    lines = []
    if summary.attempts:
        limit = f" of {summary.restart_limit}" if summary.restart_limit is not None else ""
        lines.append(f"attempt:     {summary.attempts} (restart {summary.restarts}{limit} in this launch)")
    if summary.nodes is not None:
        per_node = f" x {summary.ranks // summary.nodes}" if summary.ranks and summary.nodes else ""
        lines.append(f"nodes:       {summary.nodes}{per_node} ranks ({summary.ranks} in all)")
    if summary.step is not None:
        lines.append(f"step:        {progress_bar(int(summary.step), summary.total)}")
        speed = summary.steps_per_s
        if speed:
            eta = ""
            if live and summary.total and math.isfinite(summary.total) and summary.total > summary.step:
                eta = f"   ETA {duration((summary.total - summary.step) / speed)}"
            lines.append(f"speed:       {speed:.2f} steps/s{eta}")
        if summary.metric and summary.metric_value is not None:
            lines.append(f"metric:      {summary.metric} = {summary.metric_value:.4g}")
        if summary.progress_time:
            lines.append(f"progress:    written {duration(now - summary.progress_time)} ago (epoch {summary.epoch})")
    ckpt = summary.last_checkpoint
    if ckpt is not None:
        lines.append(f"checkpoint:  step {ckpt.get('step')}, {duration(now - float(ckpt['time']))} ago: {ckpt['path']}")
    elif summary.attempts:
        lines.append("checkpoint:  none saved yet")
    if summary.attempts > 1 or summary.preemptions:
        lines.append(f"lost:        {duration(summary.lost_s)} to {summary.preemptions} preemption(s) and restarts "
                     f"({summary.steps_redone} steps redone)")
    if summary.outcome is not None:
        lines.append(f"last end:    {describe_event(summary.outcome)}")
    return lines


def describe_event(event: dict[str, Any]) -> str:
    """One event as one line of text: what happened and its facts (no time, no host)."""
    kind = event.get("event", "?")
    facts = {k: v for k, v in event.items() if k not in ("event", "time", "host", "pid") and v is not None}
    text = {
        "submitted": "submitted to {backend} (spec {spec_digest})",
        "started": "attempt started: {nodes} node(s), {ranks} rank(s), restart {attempt}",
        "resumed": "resumed from step {step} ({checkpoint}); {steps_redone} steps redone",
        "checkpoint": "checkpoint saved at step {step} (held training {held_s}s): {path}",
        "signal": "rank {rank} received {signal}",
        "stopped": "stopped at step {step} with exit code {exit_code}: {reason}",
        "restarted": "restarted by {by} ({count} of {limit})",
        "requeued": "requeued by {by} ({count} of {limit})",
        "finished": "finished (exit code {exit_code})",
        "failed": "failed: rank {rank} exited first with exit code {exit_code} (log {log})",
    }.get(str(kind))
    if text is not None:
        try:
            return text.format(**facts)
        except (KeyError, IndexError, ValueError):
            pass
    return f"{kind} " + " ".join(f"{k}={v}" for k, v in sorted(facts.items()))


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    """The timeline ``fulmen events`` prints: local time, host, and the event in words."""
    lines = []
    for event in events:
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(float(event.get("time", 0.0))))
        lines.append(f"{when}  {str(event.get('host', '?'))[:16]:<16}  {describe_event(event)}")
    return lines
