"""The event log and the progress file of a run: what happened to a job, read by ``fulmen status``.

``<run_dir>/events.jsonl`` holds one JSON object per line, appended by whoever saw the event
(the backend, the launcher, the ranks), many processes at once. Each event is one ``write()``
on a file opened with ``O_APPEND``, so the kernel places whole lines one after another and no
writer holds a lock. A writer killed mid-write can leave a torn last line: readers skip it with
a warning and keep everything before it.

Events (``event`` field; every line also has ``time``, ``host`` and ``pid``):

==============  =====================================================================
submitted       backend, spec_digest, job_id, nodes, ranks_per_node, max_restarts
started         attempt, nodes, ranks, job_id, array_id (rank 0 / node 0 / launcher)
resumed         step, checkpoint, steps_redone (0 when the resume is exact)
checkpoint      step, path, held_s (how long the save held training), kind
signal          signal, received_at, rank (each rank that received it)
stopped         step, exit_code, reason
restarted       by, count, limit (the local launcher)  /  ``requeued`` (SLURM)
finished        exit_code 0
failed          rank (first failing), exit_code, log (path of its log)
==============  =====================================================================

``<run_dir>/progress.json`` is overwritten (temp file + rename) by rank 0 at most every few
seconds: step, epoch, total, steps_per_s, metric name and value, time. The same line is appended
to ``<run_dir>/progress.jsonl`` each time: the history behind the curve of ``fulmen report``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from fulmen.jobs.records import PRIVATE_FILE_MODE, write_private

EVENTS_FILE = "events.jsonl"
PROGRESS_FILE = "progress.json"
PROGRESS_HISTORY_FILE = "progress.jsonl"
_warned_paths: set[str] = set()


def events_path(run_dir: str | os.PathLike[str]) -> Path:
    """``<run_dir>/events.jsonl``."""
    return Path(run_dir) / EVENTS_FILE


def append_event(run_dir: str | os.PathLike[str] | None, event: str, *, fsync: bool = False,
                 **fields: Any) -> dict[str, Any] | None:  # fmt: skip
    """Append one event to the run's log; returns what was written (None without a run dir).

    One ``os.write`` of one line on an ``O_APPEND`` descriptor: concurrent writers never
    interleave inside a line. ``fsync`` makes the line durable before returning (for events
    written just before a process exits on purpose). An unwritable log is a warning, never an
    error: the log describes the run, it must not stop it.
    """
    if run_dir is None:
        return None
    record = {"event": event, "time": round(time.time(), 3), "host": socket.gethostname(), "pid": os.getpid()}
    record.update(fields)
    if not _append_line(events_path(run_dir), record, fsync=fsync):
        return None
    return record


def _append_line(path: Path, record: dict[str, Any], *, fsync: bool = False) -> bool:
    """Append ``record`` as one JSON line with one ``os.write`` on an ``O_APPEND`` descriptor.

    False (and a warning once per file) when it could not be written.
    """
    data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            written = os.write(fd, data)
            if written != len(data):  # a full disk; the reader skips the torn rest
                raise OSError(f"wrote {written} of {len(data)} bytes")
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _warn_once(str(path), f"fulmen: could not append to {path}: {exc}")
        return False
    return True


def read_events(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run's events, oldest first ([] without a log).

    A line that is not a JSON object (a writer killed mid-write leaves a torn last line) is
    skipped with a warning that names the file and line, so one bad line never hides the rest.
    """
    return _read_lines(events_path(run_dir), "event", "an event")


def read_progress_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every progress rank 0 wrote (``progress.jsonl``), oldest first: the run's curve over wall time."""
    return _read_lines(Path(run_dir) / PROGRESS_HISTORY_FILE, "step", "a progress record")


def _read_lines(path: Path, required: str, what_it_is: str) -> list[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError:
        return []
    found: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict) or required not in item:
            torn = number == len(lines)  # no newline after it: the writer did not finish
            what = "a torn last line (its writer was killed mid-write)" if torn else f"a line that is not {what_it_is}"
            warnings.warn(f"{path}:{number}: skipped {what}: {line[:80]!r}", RuntimeWarning, stacklevel=3)
            continue
        found.append(item)
    return found


def spec_digest(spec: dict[str, Any]) -> str:
    """A short digest of a job spec (its record form): two launches with one digest ran the same job."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_progress(run_dir: str | os.PathLike[str], progress: dict[str, Any]) -> None:
    """Replace ``progress.json`` (temp file + rename: readers see the old or the new one, whole) and
    append the same to ``progress.jsonl``, the history ``fulmen report`` draws the curve from.

    Called by rank 0 off the training thread; a failure is a warning once per run dir.
    """
    path = Path(run_dir) / PROGRESS_FILE
    progress = {**progress, "time": round(time.time(), 3)}
    try:
        write_private(path, json.dumps(progress, sort_keys=True, default=str))
    except OSError as exc:
        _warn_once(str(path), f"fulmen: could not write the progress file {path}: {exc}")
    _append_line(Path(run_dir) / PROGRESS_HISTORY_FILE, progress)


def read_progress(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last progress rank 0 wrote (None when there is none or it cannot be read)."""
    try:
        progress = json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return progress if isinstance(progress, dict) else None


def last_step_seen(run_dir: str | os.PathLike[str]) -> int | None:
    """The furthest step the run is known to have reached: stopped events and the progress file.

    What a resume compares its checkpoint's step against to count the steps it will redo.
    """
    steps = [int(e["step"]) for e in read_events(run_dir) if e.get("event") == "stopped" and e.get("step") is not None]
    progress = read_progress(run_dir)
    if progress is not None and progress.get("step") is not None:
        steps.append(int(progress["step"]))
    return max(steps) if steps else None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned_paths:
        _warned_paths.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
