"""A run's attempts cut out of its event log: wall time, queue wait, saving time, redone steps, ending."""

from __future__ import annotations

from typing import Any

from fulmen.jobs.run_timeline import attempts, marks


def preempted_once_events() -> list[dict[str, Any]]:
    """Submitted at 100, attempt 1 from 110 to 130 (two saves), requeued, attempt 2 from 150 to 170."""
    return [
        {"event": "submitted", "time": 100.0, "backend": "slurm"},
        {"event": "started", "time": 110.0, "attempt": 0, "nodes": 1, "ranks": 2},
        {"event": "checkpoint", "time": 115.0, "step": 4, "held_s": 0.25, "path": "/gone/a.ckpt"},
        {"event": "signal", "time": 128.0, "signal": "SIGUSR2", "rank": 0},
        {"event": "signal", "time": 128.0, "signal": "SIGUSR2", "rank": 1},
        {"event": "checkpoint", "time": 129.0, "step": 8, "held_s": 0.75, "path": "/gone/resume.ckpt"},
        {"event": "stopped", "time": 130.0, "step": 8, "exit_code": 75, "reason": "preempted"},
        {"event": "requeued", "time": 130.5, "by": "rank 0", "count": 1, "limit": 3},
        {"event": "started", "time": 150.0, "attempt": 1, "nodes": 1, "ranks": 2},
        {"event": "resumed", "time": 151.0, "step": 8, "checkpoint": "/gone/resume.ckpt", "steps_redone": 0},
        {"event": "finished", "time": 170.0, "exit_code": 0},
    ]


def test_each_start_opens_an_attempt_that_its_first_ending_closes() -> None:
    first, second = attempts(preempted_once_events())
    assert (first.number, first.start, first.end, first.wait_s) == (1, 110.0, 130.0, None)
    assert (first.checkpoints, first.saving_s, first.wall_s, first.training_s) == (2, 1.0, 20.0, 19.0)
    assert first.ending is not None and first.ending["exit_code"] == 75
    assert (second.wait_s, second.resumed_from, second.steps_redone, second.wall_s) == (20.0, 8, 0, 20.0)
    assert second.ending is not None and second.ending["event"] == "finished"


def test_an_attempt_without_an_ending_ends_at_the_next_start_and_a_running_one_stays_open() -> None:
    logged = [{"event": "started", "time": 10.0}, {"event": "started", "time": 40.0},
              {"event": "resumed", "time": 41.0, "step": 5, "steps_redone": 3}]
    first, second = attempts(logged)
    assert (first.end, first.ending, second.wait_s) == (40.0, None, 0.0)
    assert (second.end, second.wall_s, second.steps_redone) == (None, None, 3)


def test_marks_are_the_signals_stops_requeues_and_resumes() -> None:
    assert marks(preempted_once_events()) == [
        (128.0, "signal SIGUSR2"), (128.0, "signal SIGUSR2"), (130.0, "stopped 8"), (130.5, "requeued"),
        (151.0, "resumed 8")]
