"""``fulmen status SWEEP`` / ``fulmen cancel SWEEP --trial N``: a sweep named by dir, name or array id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fulmen.jobs import events, records
from fulmen.jobs.run_result import write_result
from fulmen.jobs.spec import JobSpec
from fulmen.launcher import job_commands
from fulmen.launcher.sweep_run import COMPLETED, RUNNING, write_sweep, write_trial_state
from fulmen.launcher.sweep_status import find_sweep_dir, sweep_screen
from fulmen.slurm import commands
from fulmen.slurm.commands import JobState
from fulmen.sweep.space import SweepSpace, parse_sweep_option


@pytest.fixture
def sweep_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three trials: 0 finished (best 0.25), 1 running after one requeue (step 2 of 4), 2 not started."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    folder = tmp_path / "fulmen_runs" / "fit-sweep-1"
    space = SweepSpace((parse_sweep_option("lr=0.1,0.01,0.001"),))
    trials = space.generate()
    write_sweep(folder, JobSpec(entry="fit.py"), space, trials)
    write_trial_state(folder, trials[0], COMPLETED, 0)
    write_result(folder / "trial_0000", {"state": "finished", "global_step": 4, "metrics": {"val_loss": 0.3},
                                         "checkpoint": {"monitor": "val_loss", "mode": "min",
                                                        "best_model_score": 0.25, "best_model_path": None}})
    write_trial_state(folder, trials[1], RUNNING)
    running = folder / "trial_0001"
    for attempt in (0, 1):
        events.append_event(running, "started", attempt=attempt, nodes=1, ranks=1)
    events.write_progress(running, {"step": 2, "total": 4, "epoch": 0, "metric": "val_loss", "metric_value": 0.5})
    return folder


def test_status_of_a_sweep_dir_shows_one_row_per_trial_with_step_bar_metric_and_requeues(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert job_commands.status(str(sweep_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sweep {sweep_dir} (3 trials: 1 COMPLETED, 1 PENDING, 1 RUNNING)"
    assert lines[1].split() == ["trial", "lr", "state", "step", "val_loss", "requeues", "job"]
    assert lines[2].split() == ["0", "0.1", "COMPLETED", "4", "0.25", "0", "-"]  # no progress file: no total
    assert lines[3].split() == ["1", "0.01", "RUNNING", "[#####.....]", "2/4", "50%", "0.5", "1", "-"]
    assert lines[4].split() == ["2", "0.001", "PENDING", "-", "-", "0", "-"]
    assert sweep_screen(sweep_dir).live  # trials 1 and 2 are not over


def test_status_json_of_a_sweep_lists_the_trials(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert job_commands.status(str(sweep_dir), as_json=True) == 0
    trials = json.loads(capsys.readouterr().out)["trials"]
    assert [(t["trial"], t["state"], t["step"], t["total"], t["best"], t["requeues"]) for t in trials] == [
        (0, COMPLETED, 4, None, 0.25, 0), (1, RUNNING, 2, 4, 0.5, 1), (2, "PENDING", None, None, None, 0)]


def test_a_sweep_is_found_by_dir_by_name_and_by_array_id_and_a_job_id_wins(
    sweep_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_sweep_dir(str(sweep_dir)) == sweep_dir.resolve()
    monkeypatch.chdir(sweep_dir.parents[1])
    assert find_sweep_dir("fit-sweep-1") == sweep_dir.resolve()
    assert find_sweep_dir("77") is None
    records.write_record(records.JobRecord("77_1", "slurm", str(sweep_dir / "trial_0001"), "fit", 1.0, {}, {}))
    assert find_sweep_dir("77") == sweep_dir
    (sweep_dir.parent / "other").mkdir()
    records.write_record(records.JobRecord("77", "slurm", str(sweep_dir.parent / "other"), "x", 2.0, {}, {}))
    assert find_sweep_dir("77") is None  # a recorded job of that id is the job, not the array


def test_cancel_a_sweep_trial_by_array_id_cancels_only_that_element(
    sweep_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trial_1 = sweep_dir / "trial_0001"
    records.write_record(records.JobRecord("77_1", "slurm", str(trial_1), "fit", 1.0, {}, {}))
    state = json.loads((trial_1 / "trial.json").read_text())
    (trial_1 / "trial.json").write_text(json.dumps({**state, "job_id": "77_1"}))
    monkeypatch.setattr(commands, "job_state", lambda j: JobState(j, "RUNNING", "", 0, "n1", "00:00:09", "sacct"))
    cancelled: list[str] = []
    monkeypatch.setattr(commands, "cancel", lambda job_id, **kw: cancelled.append(job_id))
    assert job_commands.cancel("77", trial=1) == 0
    assert cancelled == ["77_1"] and "cancelled trial 1 (job 77_1)" in capsys.readouterr().out
    assert json.loads((trial_1 / "trial.json").read_text())["slurm_state"] == "CANCELLED"


def test_cancel_with_trial_of_a_plain_job_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "run").mkdir()
    records.write_record(records.JobRecord("21", "slurm", str(tmp_path / "run"), "train", 1.0, {}, {}))
    assert job_commands.cancel("21", trial=2) == 1
    err = capsys.readouterr().err
    assert "--trial 2 is for a sweep, but 21 is not one" in err and "HINT:" in err
