"""``launch --cluster slurm --sweep ... --parallel 2 --wait``: ONE job array on the real cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
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
    elements = _elements(array_id, 4)
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
