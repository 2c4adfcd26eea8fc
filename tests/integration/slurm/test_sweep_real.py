"""``launch --cluster slurm --sweep ... --parallel 2 --wait``: ONE job array on the real cluster (issue #12's figures)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from fulmen.slurm import commands
from tests.integration.slurm.conftest import fulmen_cli
from tests.integration.slurm.test_submit_real import wait_for_line, wait_until_final
from tests.integration.slurm.test_training_real import (  # noqa: F401  (reference_weights is a fixture)
    RESUME_ARGS,
    all_rank0_text,
    assert_bit_equal,
    load_weights,
    reference_weights,
)

SCRIPT = Path(__file__).resolve().parents[1] / "local" / "scripts" / "sweep_fit.py"
TINY = Path(__file__).with_name("train_tiny.py")
pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]


def _elements(array_id: str, count: int) -> list[tuple[str, str, datetime, datetime]]:
    """The array's elements as sacct lists them, once all ``count`` are there (accounting lags)."""
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(["sacct", "-j", array_id, "-X", "-n", "-P", "-o", "JobID,State,Start,End"],
                             capture_output=True, text=True, check=True).stdout
        rows = [line.split("|") for line in out.splitlines() if line.strip()]
        if len(rows) >= count or time.monotonic() > deadline:
            break
        time.sleep(1)
    return [(job, state, datetime.fromisoformat(start), datetime.fromisoformat(end)) for job, state, start, end in rows]


def _trial(sweep_dir: Path, index: int) -> dict:
    return json.loads((sweep_dir / f"trial_{index:04d}" / "trial.json").read_text())


@pytest.mark.timeout(600)
def test_a_six_trial_grid_is_one_array_two_at_a_time_and_a_rerun_after_cancelling_two_runs_those_two(
    project: Path, job_env: dict[str, str]
) -> None:
    shutil.copy(SCRIPT, project / "sweep_fit.py")
    notes, slow_file = project / "notes", project / "slow"
    notes.mkdir()
    slow_file.write_text("4")  # trials 4 and 5 (hidden=4, the last two in grid order) wait to be cancelled
    env = {**job_env, "NOTES_DIR": str(notes), "FAIL_FILE": str(project / "no-fail"), "SLOW_FILE": str(slow_file)}
    options = ["--cluster", "slurm", "--sweep", "hidden=2,3,4", "--sweep", "lr=0.1,0.01", "--parallel", "2", "--wait"]
    command = [sys.executable, "-m", "fulmen.launcher", "launch", *options, "sweep_fit.py", "--epochs", "1"]
    first = subprocess.Popen(command, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sweep_dir = _cancel_the_last_two_once_running(project, notes, env)
        out, err = first.communicate(timeout=240)
    finally:
        first.kill()
        for path in (project / "fulmen_runs").glob("*/trial_*/trial.json"):  # nothing keeps sleeping on the cluster
            subprocess.run(["scancel", json.loads(path.read_text())["job_id"].split("_")[0]], check=False)
    assert first.returncode == 1 and "trial_0004" in err and "trial_0005" in err, out + err
    states = [_trial(sweep_dir, i) for i in range(6)]
    array_id = states[0]["job_id"].split("_")[0]
    assert [s["job_id"] for s in states] == [f"{array_id}_{i}" for i in range(6)]  # one submission
    assert [s["state"] for s in states] == ["COMPLETED"] * 4 + ["FAILED"] * 2
    elements = _elements(array_id, 6)
    assert sorted(job for job, *_ in elements) == [f"{array_id}_{i}" for i in range(6)]  # sacct: JOBID_0..5
    for job, _, start, _ in elements:  # never more than 2 elements running at once
        assert sum(1 for _, _, s, e in elements if s <= start < e) <= 2, (job, elements)

    slow_file.unlink()
    second = fulmen_cli(["launch", *options, "--run-dir", str(sweep_dir), "sweep_fit.py", "--epochs", "1"], env, project)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "submitted 2 of 6 trial(s)" in second.stderr
    rerun = [_trial(sweep_dir, i)["job_id"] for i in (4, 5)]
    assert rerun[0].split("_")[0] != array_id and rerun[0].split("_")[0] == rerun[1].split("_")[0]
    assert [_trial(sweep_dir, i)["job_id"] for i in range(4)] == [f"{array_id}_{i}" for i in range(4)]  # untouched

    trials = json.loads(fulmen_cli(["sweep", "results", str(sweep_dir), "--json"], env, project).stdout)["trials"]
    assert len(trials) == 6 and [t["state"] for t in trials] == ["COMPLETED"] * 6
    assert all(t["global_step"] == 4 and "val_loss" in t["metrics"] for t in trials)
    assert sorted(json.dumps(t["values"]) for t in trials) == sorted(
        json.dumps({"hidden": h, "lr": lr}) for h in (2, 3, 4) for lr in (0.1, 0.01))
    table = fulmen_cli(["status", array_id], env, project)  # the sweep by its first array's id
    assert table.stdout.splitlines()[0].endswith("(6 trials: 6 COMPLETED)"), table.stdout + table.stderr


def _cancel_the_last_two_once_running(project: Path, notes: Path, env: dict[str, str]) -> Path:
    """Wait for trials 4 and 5 to start (they sleep), then cancel one by array id, one by sweep dir."""
    deadline = time.monotonic() + 200
    while not ((notes / "start_4").exists() and (notes / "start_5").exists()):
        assert time.monotonic() < deadline, f"trials 4 and 5 did not start: {sorted(p.name for p in notes.iterdir())}"
        time.sleep(1)
    (sweep_dir,) = (project / "fulmen_runs").iterdir()
    array_id = _trial(sweep_dir, 4)["job_id"].split("_")[0]
    by_id = fulmen_cli(["cancel", array_id, "--trial", "4"], env, project)
    assert by_id.returncode == 0 and f"cancelled trial 4 (job {array_id}_4)" in by_id.stdout, by_id.stdout + by_id.stderr
    by_dir = fulmen_cli(["cancel", str(sweep_dir), "--trial", "5"], env, project)
    assert by_dir.returncode == 0 and "cancelled trial 5" in by_dir.stdout, by_dir.stdout + by_dir.stderr
    return sweep_dir


@pytest.mark.timeout(600)
def test_usr2_to_one_element_requeues_only_it_and_it_ends_bit_equal(
    project: Path, job_env: dict[str, str], reference_weights: dict  # noqa: F811  (the imported fixture)
) -> None:
    shutil.copy(TINY, project / "train_tiny.py")
    launch = ["launch", "--cluster", "slurm", "--nodes", "2", "--nproc-per-node", "1", "--parallel", "2",
              "--sweep", "step-sleep=0.3,0.05", "train_tiny.py", *RESUME_ARGS]
    proc = fulmen_cli(launch, job_env, project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sweep_dir,) = (project / "fulmen_runs").iterdir()
    ids = [json.loads((sweep_dir / f"trial_{i:04d}" / "trial.json").read_text())["job_id"] for i in (0, 1)]
    slow = sweep_dir / "trial_0000"
    wait_for_line(slow / "logs" / "rank_0.log", r"^STEP 8 at", 180)
    commands.cancel(ids[0], signal="USR2")
    for job_id in ids:
        assert wait_until_final(job_id, 400).state == "COMPLETED"
    assert [commands.job_state(job_id).restarts for job_id in ids] == [1, 0]  # only the signalled element
    texts = all_rank0_text(slow)
    assert len(texts) == 2 and "DONE global_step=48" in texts[-1]
    assert_bit_equal(load_weights(slow), reference_weights)
    assert_bit_equal(load_weights(sweep_dir / "trial_0001"), reference_weights)
    assert len(all_rank0_text(sweep_dir / "trial_0001")) == 1


def test_sweep_cancel_one_trial_then_the_rest(project: Path, job_env: dict[str, str]) -> None:
    (project / "sleepy.py").write_text("import time, sys; time.sleep(120)\n")
    launch = ["launch", "--cluster", "slurm", "--sweep", "n=1,2,3", "--parallel", "3", "sleepy.py"]
    assert fulmen_cli(launch, job_env, project).returncode == 0
    (sweep_dir,) = (project / "fulmen_runs").iterdir()
    try:
        _cancel_one_then_the_rest(sweep_dir, project, job_env)
    finally:  # nothing of this test keeps sleeping on the shared cluster
        array_id = json.loads((sweep_dir / "trial_0000" / "trial.json").read_text())["job_id"].split("_")[0]
        subprocess.run(["scancel", array_id], check=False)


def _cancel_one_then_the_rest(sweep_dir: Path, project: Path, job_env: dict[str, str]) -> None:
    one = fulmen_cli(["sweep", "cancel", str(sweep_dir), "--trial", "1"], job_env, project)
    assert one.returncode == 0 and "cancelled trial 1" in one.stdout, one.stdout + one.stderr
    states = [row["state"] for row in json.loads(fulmen_cli(
        ["sweep", "results", str(sweep_dir), "--json"], job_env, project).stdout)["trials"]]
    assert states[1] == "FAILED" and states[0] not in ("FAILED", "COMPLETED") and states[2] not in ("FAILED", "COMPLETED")
    trial_1 = json.loads((sweep_dir / "trial_0001" / "trial.json").read_text())
    assert trial_1["slurm_state"] == "CANCELLED"
    rest = fulmen_cli(["sweep", "cancel", str(sweep_dir)], job_env, project)
    assert rest.stdout.count("cancelled trial") == 2, rest.stdout + rest.stderr
