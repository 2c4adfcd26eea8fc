"""fulmen status / logs / cancel / list on job records, with SLURM faked at its seam."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fulmen.jobs import records
from fulmen.launcher import job_commands
from fulmen.slurm import commands
from fulmen.slurm.commands import JobState


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    run = tmp_path / "train-1"
    (run / "logs").mkdir(parents=True)
    records.write_record(records.JobRecord("21", "slurm", str(run), "train", 1.0, {}, {"num_tasks": 4}))
    monkeypatch.setattr(
        commands, "job_state", lambda j: JobState(j, "COMPLETED", "0:0", 1, "n[1-2]", "00:00:09", "sacct")
    )
    return run


def test_status_reports_state_restarts_and_run_dir(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert job_commands.status("21") == 0
    out = capsys.readouterr().out
    assert "state: COMPLETED  (from sacct)" in out and "restarts: 1" in out and f"run dir: {run_dir}" in out
    monkeypatch.chdir(run_dir.parent)
    assert job_commands.status(None) == 0  # the latest job launched here
    assert job_commands.status("nope") == 1


def test_logs_prints_earlier_attempts_then_latest(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "logs" / "rank_3.attempt_0.log").write_text("first run\n")
    (run_dir / "logs" / "rank_3.log").write_text("second run\n")
    (run_dir / "logs" / "rank_0.log").write_text("rank zero\n")
    assert job_commands.logs("21", rank=3) == 0
    out = capsys.readouterr().out
    assert out.index("first run") < out.index("rank_3.log (latest attempt)") < out.index("second run")
    assert "rank zero" not in out
    assert job_commands.logs("21") == 0
    assert capsys.readouterr().out == "rank zero\n"


def test_logs_rejects_a_rank_outside_the_job(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert job_commands.logs("21", rank=4) == 1
    assert "ranks 0..3" in capsys.readouterr().err


def test_logs_of_a_queued_job(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert job_commands.logs("21", rank=1) == 1
    assert "may still be queued" in capsys.readouterr().err


def test_cancel_calls_scancel(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cancelled: list[str] = []
    monkeypatch.setattr(commands, "cancel", lambda job_id, **kw: cancelled.append(job_id))
    assert job_commands.cancel("train") == 0
    assert cancelled == ["21"]


def test_list_shows_one_line_per_job(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert job_commands.list_jobs(all_jobs=True) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["JOB", "BACKEND", "STATE", "NAME"]
    assert lines[1].split()[:4] == ["21", "slurm", "COMPLETED", "train"]


def test_local_records_report_the_state_the_launcher_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    run = tmp_path / "local-run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "rank_1.log").write_text("local rank one\n")
    records.write_record(records.JobRecord("20261123-1", "local", str(run), "fit", 1.0, {}, {"final_state": "SUCCEEDED"}))
    assert job_commands.status("20261123-1") == 0
    assert "state: SUCCEEDED" in capsys.readouterr().out
    assert job_commands.logs("fit", rank=1) == 0
    assert capsys.readouterr().out == "local rank one\n"
    assert job_commands.cancel("fit") == 1  # the local backend has no cancel command


def test_torchx_records_are_answered_by_the_torchx_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fulmen.jobs.backend import JobDescription
    from fulmen.launcher import torchx

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    run = tmp_path / "k8s-run"
    run.mkdir()
    records.write_record(records.JobRecord("kubernetes://default/fit-x", "k8s", str(run), "fit", 1.0, {}, {}))
    cancelled: list[str] = []
    backend = torchx.TorchxBackend
    monkeypatch.setattr(backend, "describe", lambda self, record: JobDescription("RUNNING"))
    monkeypatch.setattr(backend, "logs", lambda self, record, rank=0, follow=False: iter([f"replica {rank} line\n"]))
    monkeypatch.setattr(backend, "cancel", lambda self, record: cancelled.append(record.job_id))
    assert job_commands.status("fit") == 0
    assert "state: RUNNING" in capsys.readouterr().out
    assert job_commands.logs("fit", rank=2) == 0
    assert capsys.readouterr().out == "replica 2 line\n"
    assert job_commands.cancel("fit") == 0
    assert cancelled == ["kubernetes://default/fit-x"]


def test_a_local_run_whose_launcher_died_is_lost_not_running(tmp_path, monkeypatch) -> None:
    """A launcher killed with SIGKILL never records its end; status must not say RUNNING forever."""
    import os
    import socket
    import subprocess
    import sys

    from fulmen.jobs import records
    from fulmen.launcher.job_commands import job_state

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = records.new_record("run-dead", "local", tmp_path, "t", {}, final_state="RUNNING",
                           launcher_pid=gone.pid, launcher_host=host)
    alive = records.new_record("run-alive", "local", tmp_path, "t", {}, final_state="RUNNING",
                            launcher_pid=os.getpid(), launcher_host=host)
    elsewhere = records.new_record("run-far", "local", tmp_path, "t", {}, final_state="RUNNING",
                                launcher_pid=gone.pid, launcher_host=host + "-other")
    finished = records.new_record("run-done", "local", tmp_path, "t", {}, final_state="COMPLETED",
                               launcher_pid=gone.pid, launcher_host=host)
    assert job_state(dead) == "LOST"
    assert job_state(alive) == "RUNNING"
    assert job_state(elsewhere) == "RUNNING"  # another host's launcher cannot be checked from here
    assert job_state(finished) == "COMPLETED"


@pytest.fixture
def two_projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Jobs launched from two project folders (ours older than theirs), the SLURM states faked."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(commands, "job_state", lambda j: JobState(j, "RUNNING", source="sacct"))
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for project, job_id, when in ((ours, "31", 1.0), (ours / "sub", "32", 2.0), (theirs, "41", 3.0)):
        run = project / "fulmen_runs" / f"train-{job_id}"
        (run / "logs").mkdir(parents=True)
        (run / "logs" / "rank_0.log").write_text(f"log of {job_id}\n")
        monkeypatch.chdir(project)
        record = records.new_record(job_id, "slurm", run, "train", {}, num_tasks=1)
        records.write_record(dataclasses.replace(record, submit_time=when))
    return ours, theirs


def test_without_a_job_the_commands_take_the_latest_launched_under_this_folder(
    two_projects: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _ = two_projects
    monkeypatch.chdir(ours)
    assert job_commands.status() == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("job 32 (slurm) train\n")  # not 41, the newer job of the other project
    assert captured.err == f"latest job launched under {ours}: 32 (fulmen list --all for others)\n"
    assert job_commands.logs() == 0
    assert capsys.readouterr().out == "log of 32\n"
    cancelled: list[str] = []
    monkeypatch.setattr(commands, "cancel", lambda job_id, **kw: cancelled.append(job_id))
    assert job_commands.cancel() == 0 and cancelled == ["32"]
    assert job_commands.status(all_jobs=True) == 0
    captured = capsys.readouterr()
    assert "job 41 (slurm)" in captured.out and "latest job of all recorded jobs: 41" in captured.err
    monkeypatch.chdir(ours / "sub")
    assert job_commands.status() == 0 and "job 32 " in capsys.readouterr().out
    assert job_commands.status("41") == 0  # a named job is found wherever it was launched
    assert "job 41 " in capsys.readouterr().out


def test_list_shows_this_folders_jobs_and_counts_the_others(
    two_projects: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _ = two_projects
    monkeypatch.chdir(ours)
    assert job_commands.list_jobs() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"jobs launched under {ours} (1 elsewhere: fulmen list --all):"
    assert [line.split()[0] for line in lines[2:]] == ["31", "32"]
    assert job_commands.list_jobs(all_jobs=True) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["31", "32", "41"]


def test_a_folder_without_jobs_says_where_the_others_are(
    two_projects: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert job_commands.status() == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fulmen status: no jobs launched under {empty} (3 elsewhere: fulmen list --all).\nHINT:")
    assert job_commands.logs() == 1 and job_commands.cancel() == 1
    capsys.readouterr()
    assert job_commands.list_jobs() == 0
    assert capsys.readouterr().out == f"no jobs launched under {empty}; 3 elsewhere (fulmen list --all).\n"


def test_report_writes_the_page_into_the_run_dir_or_where_asked(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert job_commands.report("21") == 0
    assert capsys.readouterr().out.strip() == f"wrote {run_dir / 'report.html'}"
    page = (run_dir / "report.html").read_text()
    assert "<title>job 21 (slurm) train</title>" in page and 'id="attempts"' in page
    assert job_commands.report("21", output=str(tmp_path / "r.html")) == 0 and (tmp_path / "r.html").is_file()
    assert job_commands.report("nope") == 1
