"""``launch --cluster slurm --sweep ... --parallel 2 --wait``: ONE job array on the real cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.slurm.conftest import fulmen_cli

SCRIPT = Path(__file__).resolve().parents[1] / "local" / "scripts" / "sweep_fit.py"
pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]


def _elements(array_id: str) -> list[tuple[str, str, datetime, datetime]]:
    out = subprocess.run(["sacct", "-j", array_id, "-X", "-n", "-P", "-o", "JobID,State,Start,End"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [(job, state, datetime.fromisoformat(start), datetime.fromisoformat(end)) for job, state, start, end in rows]


def test_a_four_trial_sweep_is_one_array_two_at_a_time_and_a_resume_reruns_only_the_failure(
    project: Path, job_env: dict[str, str]
) -> None:
    shutil.copy(SCRIPT, project / "sweep_fit.py")
    notes, fail_file = project / "notes", project / "fail"
    notes.mkdir()
    fail_file.write_text("0.01")
    env = {**job_env, "NOTES_DIR": str(notes), "FAIL_FILE": str(fail_file)}
    options = ["--cluster", "slurm", "--sweep", "lr=0.1,0.01", "--sweep", "hidden=2,3", "--parallel", "2", "--wait"]
    first = fulmen_cli(["launch", *options, "sweep_fit.py", "--epochs", "1"], env, project)
    assert first.returncode == 1, first.stdout + first.stderr
    (sweep_dir,) = (project / "fulmen_runs").iterdir()
    states = [json.loads((sweep_dir / f"trial_{i:04d}" / "trial.json").read_text()) for i in range(4)]
    array_id = states[0]["job_id"].split("_")[0]
    assert [s["job_id"] for s in states] == [f"{array_id}_{i}" for i in range(4)]  # one submission
    assert [s["state"] for s in states] == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]
    elements = _elements(array_id)
    assert sorted(job for job, *_ in elements) == [f"{array_id}_{i}" for i in range(4)]
    for job, _, start, _ in elements:  # never more than 2 elements running at once
        assert sum(1 for _, _, s, e in elements if s <= start < e) <= 2, (job, elements)
    assert "trial with lr=0.01 refuses to train" in first.stderr
    assert "trial_0002 (exit 1; lr=0.01 hidden=2)" in first.stderr

    fail_file.unlink()
    second = fulmen_cli(["launch", *options, "--run-dir", str(sweep_dir), "sweep_fit.py", "--epochs", "1"], env, project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "submitted 2 of 4 trial(s)" in second.stderr
    rerun = [json.loads((sweep_dir / f"trial_{i:04d}" / "trial.json").read_text())["job_id"] for i in (2, 3)]
    assert rerun[0].split("_")[0] != array_id and rerun[0].split("_")[0] == rerun[1].split("_")[0]

    table = fulmen_cli(["sweep", "results", str(sweep_dir), "--json"], env, project)
    trials = json.loads(table.stdout)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETED"] * 4
    assert all(t["global_step"] == 4 and "val_loss" in t["metrics"] for t in trials)
    assert sorted(json.dumps(t["values"]) for t in trials) == sorted(
        json.dumps({"lr": lr, "hidden": h}) for lr in (0.1, 0.01) for h in (2, 3))
