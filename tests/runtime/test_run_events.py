"""The Trainer's side of the event log: stop, resume (with the steps redone) and rank 0's progress."""

from __future__ import annotations

import time

import torch

import fulmen as pl
from fulmen.jobs import events
from fulmen.runtime.run_events import ProgressReport
from tests.core.models import TRAINER_QUIET
from tests.runtime.test_trainer_preemption import Net, _loader, _preempt


def test_a_stop_logs_signal_checkpoint_and_stop_and_the_resume_redoes_0_steps(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    _preempt(tmp_path, monkeypatch, at_step=4)
    logged = events.read_events(tmp_path)
    assert [e["event"] for e in logged] == ["signal", "checkpoint", "stopped"]
    signal_event, saved, stopped = logged
    assert (signal_event["signal"], signal_event["rank"], signal_event["step"]) == ("SIGTERM", 0, 4)
    assert signal_event["received_at"] <= stopped["time"]
    assert (saved["kind"], saved["step"]) == ("resume", 4) and saved["held_s"] >= 0
    assert (stopped["step"], stopped["exit_code"], stopped["reason"]) == (4, 75, "preempted (SIGTERM)")
    assert [p["step"] for p in events.read_progress_history(tmp_path)] == [4]  # the stopped attempt is on the curve

    pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(Net(), _loader())
    resumed = events.read_events(tmp_path)[-1]
    assert resumed["event"] == "resumed" and resumed["checkpoint"] == saved["path"]
    assert (resumed["step"], resumed["steps_redone"]) == (4, 0)
    assert events.read_progress(tmp_path)["step"] == 12  # the end of the fit is always written


def test_a_resume_behind_the_last_progress_counts_the_steps_redone(tmp_path, monkeypatch) -> None:
    _preempt(tmp_path, monkeypatch, at_step=4)
    events.write_progress(tmp_path, {"step": 9})  # a later attempt got to step 9, then crashed
    pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(Net(), _loader())
    resumed = [e for e in events.read_events(tmp_path) if e["event"] == "resumed"]
    assert [(e["step"], e["steps_redone"]) for e in resumed] == [(4, 5)]


def test_a_plain_run_writes_no_event_log(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FULMEN_RUN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    pl.Trainer(max_epochs=1, **TRAINER_QUIET).fit(Net(), _loader())
    assert not list(tmp_path.rglob(events.EVENTS_FILE)) and not list(tmp_path.rglob(events.PROGRESS_FILE))


def test_progress_is_written_when_due_with_the_speed_and_not_in_between(tmp_path) -> None:
    report = ProgressReport(
        str(tmp_path),
        lambda: {"epoch": 0, "total": 100.0, "metric": "loss", "metric_value": torch.tensor(0.5)},
        every_s=3600,
    )
    report.tick(0)
    report.tick(1)
    assert events.read_progress(tmp_path) is None  # not due yet
    time.sleep(0.05)
    report.tick(10, force=True)
    written = events.read_progress(tmp_path)
    assert (written["step"], written["total"], written["metric_value"]) == (10, 100.0, 0.5)
    assert 0 < written["steps_per_s"] < 10 / 0.05 * 1.01


def test_an_infinite_total_is_written_as_unknown(tmp_path) -> None:
    ProgressReport(str(tmp_path), lambda: {"total": float("inf")}).tick(3, force=True)
    assert events.read_progress(tmp_path)["total"] is None


def test_without_a_run_dir_nothing_is_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ProgressReport(None, dict, every_s=0).tick(5, force=True)
    assert list(tmp_path.iterdir()) == []
