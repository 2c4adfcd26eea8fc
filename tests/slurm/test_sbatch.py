"""JobSpec -> sbatch script: the exact text --dry-run prints (and sbatch receives)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec, SlurmOptions
from fulmen.slurm.sbatch import executor_parameters, render_sbatch

EXPECTED_12_NODES = """\
#!/bin/bash

# Parameters
#SBATCH --account=proj
#SBATCH --constraint=a100
#SBATCH --cpus-per-task=6
#SBATCH --error=/runs/big-1/submitit/%j_0_log.err
#SBATCH --exclusive
#SBATCH --gpus-per-node=8
#SBATCH --hint=nomultithread
#SBATCH --job-name=big
#SBATCH --mail-type=END
#SBATCH --mem=64G
#SBATCH --nodes=12
#SBATCH --ntasks-per-node=8
#SBATCH --open-mode=append
#SBATCH --output=/runs/big-1/submitit/%j_0_log.out
#SBATCH --partition=gpu
#SBATCH --qos=high
#SBATCH --requeue
#SBATCH --signal=USR1@120
#SBATCH --time=2:00:00
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output /runs/big-1/submitit/%j_%t_log.out --error /runs/big-1/submitit/%j_%t_log.err PY -u -m submitit.core._submit /runs/big-1/submitit
"""

BIG = JobSpec(
    entry="train.py",
    args=("--lr", "0.1"),
    cluster="slurm",
    nodes=12,
    gpus_per_node=8,
    name="big",
    slurm=SlurmOptions(
        partition="gpu", time="2:00:00", account="proj", qos="high", constraint="a100", mem="64G",
        cpus_per_task=6, exclusive=True, signal="USR1@120",
        extra=(("mail-type", "END"), ("hint", "nomultithread")),
    ),
)


def test_dry_run_without_submitit_names_the_extra_to_install(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """submitit hidden from the import system: the same clean error as a real submission, no traceback."""
    (tmp_path / "train.py").write_text("print('hi')\n")
    hide = (
        "import sys\n"
        "class HideSubmitit:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'submitit':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, HideSubmitit())\n"
        "from fulmen.launcher.cli import launch_main\n"
        "sys.exit(launch_main(sys.argv[1:]))\n"
    )
    for extra in (["--dry-run"], []):
        proc = subprocess.run([sys.executable, "-c", hide, "--cluster", "slurm", *extra, "train.py"], cwd=tmp_path,
                              env=subprocess_env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            "error: Submitting to SLURM needs the 'submitit' package, which is not installed.\n"
            "HINT: pip install 'fulmen[slurm]'\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]  # no run dir


def test_render_sbatch_pins_every_option() -> None:
    assert render_sbatch(BIG, Path("/runs/big-1"), python="PY") == EXPECTED_12_NODES


def test_cpu_ranks_get_tasks_but_no_gpus_and_no_default_time_limit() -> None:
    spec = JobSpec(entry="train.py", cluster="slurm", nodes=2, nproc_per_node=3)
    script = render_sbatch(spec, Path("/r"), python="PY")
    assert "#SBATCH --ntasks-per-node=3\n" in script and "#SBATCH --nodes=2\n" in script
    assert "gpus" not in script
    # submitit would add --time=5 unless told otherwise; no --time keeps the partition's limit.
    assert "--time" not in script
    assert "#SBATCH --signal=USR2@90\n" in script and "#SBATCH --requeue\n" in script


def test_sbatch_arg_overrides_and_flag_without_value() -> None:
    spec = JobSpec(entry="t.py", cluster="slurm", slurm=SlurmOptions(extra=(("open_mode", "truncate"), ("--overcommit", ""))))
    params = executor_parameters(spec)
    assert params["additional_parameters"]["open-mode"] == "truncate"
    assert "#SBATCH --overcommit\n" in render_sbatch(spec, Path("/r"), python="PY")


@pytest.mark.parametrize(("time", "rendered"), [("60", "--time=60"), ("1-00:00:00", "--time=1-00:00:00")])
def test_time_is_passed_through_in_sbatch_syntax(time: str, rendered: str) -> None:
    spec = JobSpec(entry="t.py", cluster="slurm", slurm=SlurmOptions(time=time))
    assert f"#SBATCH {rendered}\n" in render_sbatch(spec, Path("/r"), python="PY")


def test_setup_lines_run_in_the_batch_script_before_srun() -> None:
    spec = JobSpec(entry="t.py", cluster="slurm",
                   slurm=SlurmOptions(setup=("module load cuda/12.1", "source /opt/venv/bin/activate")))
    script = render_sbatch(spec, Path("/r"), python="PY")
    assert script.endswith(
        "#SBATCH --wckey=submitit\n\n"
        "# setup\nmodule load cuda/12.1\nsource /opt/venv/bin/activate\n\n"
        "# command\nexport SUBMITIT_EXECUTOR=slurm\n"
        "srun --unbuffered --output /r/submitit/%j_%t_log.out --error /r/submitit/%j_%t_log.err "
        "PY -u -m submitit.core._submit /r/submitit\n"
    )
    assert "# setup" not in render_sbatch(JobSpec(entry="t.py", cluster="slurm"), Path("/r"), python="PY")


@pytest.mark.parametrize("line", ["module load cuda\nmodule load nccl", "export A=1\r"])
def test_a_setup_value_with_a_line_break_is_refused(line: str) -> None:
    with pytest.raises(LaunchError, match=r"(?s)holds a line break.*HINT: repeat the flag"):
        SlurmOptions(setup=(line,))
