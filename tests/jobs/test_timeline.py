"""What `fulmen status` and `fulmen events` make of a run's events and progress (plain data)."""

from __future__ import annotations

from typing import Any

from fulmen.jobs import timeline

T0 = 1_000_000.0


def preempted_twice() -> list[dict[str, Any]]:
    return [
        {"event": "submitted", "time": T0, "backend": "slurm", "spec_digest": "abc", "max_restarts": 0},
        {"event": "started", "time": T0 + 10, "attempt": 0, "nodes": 2, "ranks": 8, "max_restarts": 3},
        {"event": "checkpoint", "time": T0 + 50, "step": 100, "path": "/ckpt/a", "held_s": 0.2},
        {"event": "stopped", "time": T0 + 60, "step": 120, "exit_code": 75, "reason": "preempted (SIGUSR2)"},
        {"event": "requeued", "time": T0 + 61, "by": "fulmen", "count": 1, "limit": 3},
        {"event": "started", "time": T0 + 100, "attempt": 1, "nodes": 2, "ranks": 8, "max_restarts": 3},
        {"event": "resumed", "time": T0 + 105, "step": 120, "checkpoint": "/r", "steps_redone": 0},
        {"event": "failed", "time": T0 + 150, "rank": 3, "exit_code": 1, "log": "/l3"},
        {"event": "failed", "time": T0 + 151, "rank": 0, "exit_code": 1, "log": "/l0"},
        {"event": "started", "time": T0 + 170, "attempt": 2, "nodes": 2, "ranks": 8, "max_restarts": 3},
        {"event": "resumed", "time": T0 + 175, "step": 120, "checkpoint": "/r", "steps_redone": 30},
    ]


def test_summary_counts_attempts_gaps_redone_work_and_the_first_failure() -> None:
    progress = {"step": 200, "total": 1000, "epoch": 1, "steps_per_s": 10.0, "time": T0 + 190}
    summary = timeline.summarize(preempted_twice(), progress, exists=lambda path: path == "/ckpt/a")
    assert (summary.attempts, summary.restarts, summary.restart_limit) == (3, 2, 3)
    assert (summary.nodes, summary.ranks, summary.step, summary.total) == (2, 8, 200, 1000)
    assert summary.gaps_s == (100 - 60) + (170 - 150)  # stop -> next start, first failure -> next start
    assert summary.steps_redone == 30 and summary.lost_s == 60 + 3.0
    assert summary.preemptions == 1
    assert summary.last_checkpoint is not None and summary.last_checkpoint["step"] == 100
    assert summary.outcome is None  # the latest attempt is still running


def test_a_checkpoint_whose_file_is_gone_is_not_offered() -> None:
    summary = timeline.summarize(preempted_twice(), None, exists=lambda path: False)
    assert summary.last_checkpoint is None


def test_the_first_failing_rank_is_the_attempts_outcome() -> None:
    summary = timeline.summarize(preempted_twice()[:9], None, exists=lambda path: True)
    assert summary.outcome is not None and summary.outcome["rank"] == 3


def test_status_lines_show_bar_speed_eta_checkpoint_and_loss() -> None:
    progress = {"step": 250, "total": 1000, "epoch": 1, "steps_per_s": 5.0, "time": T0 + 190,
                "metric": "val_loss", "metric_value": 0.1234}
    summary = timeline.summarize(preempted_twice(), progress, exists=lambda path: True)
    text = "\n".join(timeline.status_lines(summary, now=T0 + 200))
    assert "attempt:     3 (restart 2 of 3 in this launch)" in text
    assert "nodes:       2 x 4 ranks (8 in all)" in text
    assert "[#######.......................] 250/1000  25%" in text
    assert "5.00 steps/s   ETA 2m30s" in text
    assert "val_loss = 0.1234" in text
    assert "checkpoint:  step 100, 2m30s ago: /ckpt/a" in text
    assert "lost:        1m06s to 1 preemption(s) and restarts (30 steps redone)" in text


def test_an_unknown_total_has_no_bar_and_no_eta() -> None:
    summary = timeline.summarize([], {"step": 7, "total": None, "steps_per_s": 2.0})
    text = "\n".join(timeline.status_lines(summary, now=T0))
    assert "7 (total unknown)" in text and "ETA" not in text


def test_an_ended_job_has_no_eta() -> None:
    summary = timeline.summarize([], {"step": 7, "total": 100, "steps_per_s": 2.0})
    assert "ETA" in "\n".join(timeline.status_lines(summary, now=T0))
    assert "ETA" not in "\n".join(timeline.status_lines(summary, now=T0, live=False))


def test_event_lines_say_what_happened() -> None:
    lines = timeline.event_lines(preempted_twice())
    assert lines[3].endswith("stopped at step 120 with exit code 75: preempted (SIGUSR2)")
    assert lines[6].endswith("resumed from step 120 (/r); 0 steps redone")
    assert lines[7].endswith("failed: rank 3 exited first with exit code 1 (log /l3)")
    assert timeline.describe_event({"event": "custom", "a": 1}) == "custom a=1"
