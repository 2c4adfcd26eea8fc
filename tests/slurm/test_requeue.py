"""requeue_job: array-aware id, --max-requeues cap, once per run; scontrol is faked."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.jobs.rundir import prepare_run_dir
from fulmen.jobs.spec import JobSpec, SlurmOptions
from fulmen.runtime.ranks import RankInfo
from fulmen.slurm import commands, requeue


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(commands, "requeue", calls.append)
    monkeypatch.setattr(commands, "show_job", lambda job_id: {"JobId": job_id, "JobState": "RUNNING"})
    return calls


def rank0(run_dir: Path | None, job_id: str = "7", restarts: int = 0) -> RankInfo:
    return RankInfo(job_id=job_id, restart_count=restarts, run_dir=str(run_dir) if run_dir else None, source="slurm")


def make_run(tmp_path: Path, max_requeues: int) -> Path:
    run_dir = tmp_path / "run"
    prepare_run_dir(JobSpec(entry="t.py", cluster="slurm", slurm=SlurmOptions(max_requeues=max_requeues)), run_dir)
    return run_dir


def test_requeues_with_the_jobs_id(tmp_path: Path, requeued: list[str]) -> None:
    assert requeue.requeue_job(rank0(make_run(tmp_path, 3), job_id="40_3"))
    assert requeued == ["40_3"]


def test_second_call_in_the_same_run_does_not_requeue_twice(
    tmp_path: Path, requeued: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_run(tmp_path, 3)
    assert requeue.requeue_job(rank0(run_dir))
    # After the requeue the controller shows the job ending; the second call must still say
    # "requeued" (and not ask the controller or print that it was not requeued).
    monkeypatch.setattr(commands, "show_job", lambda job_id: pytest.fail("asked the controller again"))
    assert requeue.requeue_job(rank0(run_dir))
    assert requeued == ["7"]
    assert "not requeued" not in capsys.readouterr().err
    monkeypatch.setattr(commands, "show_job", lambda job_id: {"JobId": job_id, "JobState": "RUNNING"})
    # The next run (restart 1) may requeue again.
    assert requeue.requeue_job(rank0(run_dir, restarts=1))
    assert requeued == ["7", "7"]


def test_max_requeues_caps_it(tmp_path: Path, requeued: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_run(tmp_path, 2)
    assert not requeue.requeue_job(rank0(run_dir, restarts=2))
    assert requeued == []
    assert "limit is --max-requeues 2" in capsys.readouterr().err


def test_max_requeues_zero_never_requeues(tmp_path: Path, requeued: list[str]) -> None:
    assert not requeue.requeue_job(rank0(make_run(tmp_path, 0)))
    assert requeued == []


def test_without_run_dir_uses_default_cap_and_env_id(monkeypatch: pytest.MonkeyPatch, requeued: list[str]) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.delenv("FULMEN_RUN_DIR", raising=False)
    assert requeue.requeue_job(None)
    assert requeued == ["10_2"]
    assert requeue.max_requeues_for(None) == SlurmOptions().max_requeues


def test_failed_scontrol_is_reported_and_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fulmen.errors import SlurmCommandError

    def fail(job_id: str) -> None:
        raise SlurmCommandError("scontrol requeue 7 failed")

    monkeypatch.setattr(commands, "requeue", fail)
    monkeypatch.setattr(commands, "show_job", lambda job_id: None)
    run_dir = make_run(tmp_path, 3)
    assert not requeue.requeue_job(rank0(run_dir))
    assert "requeue of job 7 failed" in capsys.readouterr().err
    calls: list[str] = []
    monkeypatch.setattr(commands, "requeue", calls.append)
    assert requeue.requeue_job(rank0(run_dir))  # the marker was released
    assert calls == ["7"]


def test_not_in_slurm(monkeypatch: pytest.MonkeyPatch, requeued: list[str]) -> None:
    for var in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    assert not requeue.requeue_job(None)
    assert requeued == []


def test_a_cancelled_job_is_not_requeued(
    tmp_path: Path, requeued: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `scontrol show job` says between scancel and the end of the job.
    monkeypatch.setattr(commands, "show_job", lambda job_id: {"JobId": job_id, "JobState": "COMPLETING"})
    assert not requeue.requeue_job(rank0(make_run(tmp_path, 3)))
    assert requeued == []
    assert "job 7 is COMPLETING (cancelled or ending)" in capsys.readouterr().err


def test_a_decline_at_the_limit_is_said_once_per_run(tmp_path: Path, requeued: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # the Trainer's preemption hand-off and the rank entry both call requeue_job in one process
    run_dir = make_run(tmp_path, 1)
    assert not requeue.requeue_job(rank0(run_dir, restarts=1))
    assert not requeue.requeue_job(rank0(run_dir, restarts=1))
    assert capsys.readouterr().err.count("limit is --max-requeues 1") == 1
    assert requeued == []
