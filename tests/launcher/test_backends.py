"""launch(): a submission that fails leaves no half-made run directory (and keeps one that is a job's)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs import records
from fulmen.jobs.backend import Submitted
from fulmen.jobs.rundir import new_run
from fulmen.jobs.spec import JobSpec
from fulmen.launcher import backends


class RefusingRequest:
    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec

    def render(self) -> str:
        return "refused"


class RefusingBackend:
    """Creates the run dir like a real backend, then the scheduler says no (after recording, if asked)."""

    record_before_failing = False

    def __init__(self, name: str) -> None:
        self.name = name

    def dryrun(self, spec: JobSpec) -> RefusingRequest:
        return RefusingRequest(new_run(spec).spec)

    def submit(self, request: RefusingRequest) -> Submitted:
        run_dir = Path(request.spec.run_dir or "")
        (run_dir / "code").mkdir(parents=True, exist_ok=True)
        (run_dir / "spec.json").write_text("{}")
        if self.record_before_failing:
            records.write_record(records.JobRecord("7", "fake", str(run_dir), "t", 1.0))
        raise LaunchError("sbatch refused the job: Invalid feature specification")


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[RefusingBackend]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    module = types.ModuleType("refusing_backend")
    module.RefusingBackend = RefusingBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "refusing_backend", module)
    monkeypatch.setitem(backends.BACKENDS, "slurm", "refusing_backend:RefusingBackend")
    monkeypatch.setattr(RefusingBackend, "record_before_failing", False)
    return RefusingBackend


def test_a_refused_submission_removes_the_run_dir_it_made(
    refusing: type[RefusingBackend], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LaunchError, match="sbatch refused"):
        backends.launch(JobSpec(entry="t.py", cluster="slurm", run_root=str(tmp_path / "runs")))
    assert list((tmp_path / "runs").iterdir()) == []
    assert "removed its unfinished run dir" in capsys.readouterr().err


def test_an_existing_run_dir_and_a_recorded_job_are_kept(refusing: type[RefusingBackend], tmp_path: Path) -> None:
    existing = tmp_path / "relaunch"
    (existing / "checkpoints").mkdir(parents=True)
    with pytest.raises(LaunchError):
        backends.launch(JobSpec(entry="t.py", cluster="slurm", run_dir=str(existing)))
    assert (existing / "checkpoints").is_dir() and (existing / "spec.json").is_file()
    refusing.record_before_failing = True
    with pytest.raises(LaunchError):
        backends.launch(JobSpec(entry="t.py", cluster="slurm", run_root=str(tmp_path / "runs")))
    [kept] = list((tmp_path / "runs").iterdir())
    assert (kept / records.RECORD_FILE).is_file()
