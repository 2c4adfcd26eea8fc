"""The SLURM backend without a cluster: --dry-run output, early errors, --wait helpers."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.launcher.spec import JobSpec, SlurmOptions
from fulmen.slurm import commands, submit
from fulmen.slurm.commands import JobState


def test_dry_run_prints_script_and_command_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")
    monkeypatch.setattr(commands, "run_command", lambda *a, **k: pytest.fail("dry run must not call SLURM"))
    run_dir = tmp_path / "runs" / "r1"
    spec = JobSpec(entry="train.py", args=("--lr", "0.1"), cluster="slurm", nodes=2, gpus_per_node=2,
                   run_dir=str(run_dir), slurm=SlurmOptions(partition="debug", time="10"))
    assert submit.run(spec, dry_run=True) == 0
    out = capsys.readouterr().out
    python = sys.executable
    assert out == (
        "#!/bin/bash\n\n# Parameters\n"
        f"#SBATCH --error={run_dir}/submitit/%j_0_log.err\n"
        "#SBATCH --gpus-per-node=2\n#SBATCH --job-name=train\n#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=2\n#SBATCH --open-mode=append\n"
        f"#SBATCH --output={run_dir}/submitit/%j_0_log.out\n"
        "#SBATCH --partition=debug\n#SBATCH --requeue\n#SBATCH --signal=USR2@90\n#SBATCH --time=10\n"
        "#SBATCH --wckey=submitit\n\n# command\nexport SUBMITIT_EXECUTOR=slurm\n"
        f"srun --unbuffered --output {run_dir}/submitit/%j_%t_log.out --error {run_dir}/submitit/%j_%t_log.err "
        f"{python} -u -m submitit.core._submit {run_dir}/submitit\n\n"
        f"# submit command: sbatch <the script above> (written to {run_dir}/submitit/<job id>_submission.sh)\n"
        f"# each of the 4 task(s) runs, from the code snapshot {run_dir}/code: train.py --lr 0.1\n"
    )
    assert not run_dir.exists()


def test_wrong_input_fails_before_anything_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LaunchError, match="does not exist"):
        submit.run(JobSpec(entry="missing.py", cluster="slurm"))
    (tmp_path / "t.py").write_text("")
    with pytest.raises(LaunchError, match="without --gpus or --nproc-per-node"):
        submit.run(JobSpec(entry="t.py", cluster="slurm", nodes=2))
    assert not (tmp_path / "fulmen_runs").exists()


@pytest.mark.parametrize(
    ("state", "code"),
    [(JobState("1", "COMPLETED", "0:0"), 0), (JobState("1", "FAILED", "3:0"), 3),
     (JobState("1", "CANCELLED", "0:15"), 1), (JobState("1", "TIMEOUT", "0:0"), 1)],
)
def test_exit_code_follows_the_job(state: JobState, code: int) -> None:
    assert submit.exit_code_for(state) == code


def test_a_preempted_job_queued_again_has_not_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "job_state", lambda j: JobState(j, "PREEMPTED", "0:0"))
    monkeypatch.setattr(commands, "squeue_state", lambda j: JobState(j, "PENDING", source="squeue"))
    assert submit.job_has_ended("1") is None
    monkeypatch.setattr(commands, "squeue_state", lambda j: None)
    assert submit.job_has_ended("1") is not None


def test_log_follower_follows_a_rotated_log(tmp_path: Path) -> None:
    log = tmp_path / "rank_0.log"
    out = io.StringIO()
    follower = submit.LogFollower(log)
    follower.pump(out)  # no file yet: nothing, no error
    log.write_text("run 1 line 1\n")
    follower.pump(out)
    with log.open("a") as handle:
        handle.write("run 1 line 2\n")
    os.replace(log, tmp_path / "rank_0.attempt_0.log")  # a requeued run rotates the log
    log.write_text("run 2 line 1\n")
    follower.pump(out)
    follower.close()
    assert out.getvalue() == "run 1 line 1\nrun 1 line 2\nrun 2 line 1\n"


def test_log_follower_passes_carriage_returns_through(tmp_path: Path) -> None:
    log = tmp_path / "rank_0.log"
    log.write_bytes("\r 10%|█ \r 20%|██\r\ndone ✓".encode())
    out = io.StringIO(newline="")
    follower = submit.LogFollower(log)
    follower.pump(out)
    follower.close()
    assert out.getvalue() == "\r 10%|█ \r 20%|██\r\ndone ✓"  # a tqdm bar redraws in place
