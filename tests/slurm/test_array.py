"""The job array's request, without a cluster: one sbatch script with --array=0-(N-1)%K."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec, SlurmOptions
from fulmen.slurm.array import array_dryrun, check_array_size

pytest.importorskip("submitit")


def _specs(tmp_path: Path, count: int) -> list[JobSpec]:
    (tmp_path / "train.py").write_text("print('hi')\n")
    base = JobSpec(entry=str(tmp_path / "train.py"), cluster="slurm", nproc_per_node=2,
                   slurm=SlurmOptions(partition="debug", time="10"))
    return [dataclasses.replace(base, run_dir=str(tmp_path / f"trial_{i}"), args=("--lr", str(i)))
            for i in range(count)]


def test_n_runs_render_one_array_script_k_at_a_time(tmp_path: Path) -> None:
    request = array_dryrun(_specs(tmp_path, 6), tmp_path, parallel=2)
    lines = request.script.splitlines()
    assert "#SBATCH --array=0-5%2" in lines
    assert "#SBATCH --partition=debug" in lines and "#SBATCH --ntasks-per-node=2" in lines
    assert f"#SBATCH --output={tmp_path}/submitit/%A_%a_0_log.out" in lines
    assert "6 element(s), at most 2 at a time" in request.render()


def test_parallel_above_the_count_is_capped_and_one_run_is_a_plain_job(tmp_path: Path) -> None:
    assert "#SBATCH --array=0-2%3" in array_dryrun(_specs(tmp_path, 3), tmp_path, 8).script.splitlines()
    assert "--array" not in array_dryrun(_specs(tmp_path, 1), tmp_path, 2).script


def test_an_empty_array_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="at least one run"):
        array_dryrun([], tmp_path, 2)


def test_more_elements_than_max_array_size_are_refused_before_submitting() -> None:
    check_array_size(1001, 1001)
    check_array_size(5000, None)  # unknown: sbatch itself answers
    with pytest.raises(LaunchError, match="MaxArraySize is 1001") as caught:
        check_array_size(1002, 1001)
    assert "HINT" in str(caught.value)
