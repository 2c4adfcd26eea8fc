"""The SLURM backend without a cluster: --dry-run output, early errors, --wait helpers."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec, SlurmOptions
from fulmen.launcher.backends import launch
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
    assert launch(spec, dry_run=True) == 0
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
        f"# each of the 4 task(s) runs, in {tmp_path} (where launch was called; relative paths resolve here), "
        f"the code snapshot's train.py from {run_dir}/code: train.py --lr 0.1\n"
        "# ranks see: num_nodes=2, devices=2 per node, world size 4 (a Trainer without num_nodes/devices takes "
        "these; explicit values must match)\n"
    )
    assert not run_dir.exists()


def test_wrong_input_fails_before_anything_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LaunchError, match="does not exist"):
        launch(JobSpec(entry="missing.py", cluster="slurm"))
    (tmp_path / "t.py").write_text("")
    with pytest.raises(LaunchError, match="without --gpus or --nproc-per-node"):
        launch(JobSpec(entry="t.py", cluster="slurm", nodes=2))
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


def test_the_dry_run_script_is_the_script_submitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit writes the request's own script, not a second rendering of its parameters."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("")
    spec = JobSpec(entry="train.py", cluster="slurm", nodes=2, nproc_per_node=2, run_dir=str(tmp_path / "run"))
    request = submit.SlurmBackend().dryrun(spec)
    request = dataclasses.replace(request, script=request.script + "# marker\n")
    executor = submit.make_executor(request)
    assert executor._make_submission_file_text(executor._submitit_command_str, "uid") == request.script
    assert request.render().startswith(request.script)


def test_every_task_gets_the_hang_timeout_and_an_env_value_wins() -> None:
    # no launcher watches SLURM ranks: --hang-timeout reaches each rank's own watchdog
    spec = JobSpec(entry="t.py", cluster="slurm", hang_timeout=42.5, env=(("A", "1"),))
    assert dict(submit.task_environment(spec)) == {"FULMEN_HANG_TIMEOUT": "42.5", "A": "1"}
    spec = dataclasses.replace(spec, env=(("FULMEN_HANG_TIMEOUT", "7"),))
    assert submit.task_environment(spec) == (("FULMEN_HANG_TIMEOUT", "7"),)
