"""The event log: concurrent appends stay whole lines, a torn last line is skipped with a warning."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from fulmen.jobs import events


def _append_many(run_dir: str, writer: int, count: int) -> None:
    for i in range(count):
        events.append_event(run_dir, "checkpoint", rank=writer, i=i, path="x" * 500)  # long lines tear first


def test_eight_concurrent_writers_leave_only_whole_json_lines(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(tmp_path), w, 200)) for w in range(8)]
    for process in writers:
        process.start()
    events.append_event(tmp_path, "started", attempt=0)  # the launcher appends meanwhile
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    lines = (tmp_path / events.EVENTS_FILE).read_text().splitlines()
    assert len(lines) == 8 * 200 + 1
    parsed = [json.loads(line) for line in lines]  # raises on any interleaved line
    for writer in range(8):
        assert sorted(e["i"] for e in parsed if e.get("rank") == writer) == list(range(200))


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    events.append_event(tmp_path, "started", attempt=0)
    events.append_event(tmp_path, "stopped", step=7, exit_code=75, reason="preempted")
    with open(tmp_path / events.EVENTS_FILE, "ab") as handle:
        handle.write(b'{"event": "checkpoint", "step": 8, "pa')  # a writer killed mid-write
    with pytest.warns(RuntimeWarning, match="torn last line"):
        read = events.read_events(tmp_path)
    assert [e["event"] for e in read] == ["started", "stopped"]


def test_a_bad_line_in_the_middle_does_not_hide_the_rest(tmp_path: Path) -> None:
    path = tmp_path / events.EVENTS_FILE
    path.write_text('{"event": "started", "time": 1}\nnot json\n{"event": "finished", "time": 2}\n')
    with pytest.warns(RuntimeWarning, match="not an event"):
        assert [e["event"] for e in events.read_events(tmp_path)] == ["started", "finished"]


def test_an_unwritable_log_is_a_warning_not_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "run"
    with pytest.warns(RuntimeWarning, match="could not append"):
        assert events.append_event(missing, "started") is None
    assert events.append_event(None, "started") is None  # no run dir (plain python train.py): nothing


def test_the_log_is_private_and_events_carry_time_host_pid(tmp_path: Path) -> None:
    written = events.append_event(tmp_path, "submitted", backend="local")
    assert written is not None and written["pid"] == os.getpid() and written["backend"] == "local"
    assert (tmp_path / events.EVENTS_FILE).stat().st_mode & 0o777 == 0o600


def test_last_step_seen_is_the_furthest_of_stops_and_progress(tmp_path: Path) -> None:
    assert events.last_step_seen(tmp_path) is None
    events.append_event(tmp_path, "stopped", step=40, exit_code=75)
    events.write_progress(tmp_path, {"step": 35})
    assert events.last_step_seen(tmp_path) == 40
    events.write_progress(tmp_path, {"step": 52})
    assert events.last_step_seen(tmp_path) == 52
    assert events.read_progress(tmp_path)["step"] == 52


def test_every_progress_write_is_kept_in_the_history_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    events.write_progress(tmp_path, {"step": 10, "metric": "loss", "metric_value": 0.9})
    events.write_progress(tmp_path, {"step": 20, "metric": "loss", "metric_value": 0.5})
    assert events.read_progress(tmp_path)["step"] == 20
    with (tmp_path / events.PROGRESS_HISTORY_FILE).open("a") as history:
        history.write('{"step": 3')
    with pytest.warns(RuntimeWarning, match="torn last line"):
        history_lines = events.read_progress_history(tmp_path)
    assert [(p["step"], p["metric_value"]) for p in history_lines] == [(10, 0.9), (20, 0.5)]
    assert all(isinstance(p["time"], float) for p in history_lines)
