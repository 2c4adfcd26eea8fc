"""Submit-time checks with a partition table (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec, SlurmOptions
from fulmen.slurm.commands import PartitionInfo
from fulmen.slurm.validation import check_against_cluster, check_spec

TABLE = {
    "debug": PartitionInfo("debug", 3, 12, "UP", True, None, 4),
    "cpu": PartitionInfo("cpu", 8, 32, "UP", False, 2, None),
}


def spec(**kw: object) -> JobSpec:
    return JobSpec(entry="train.py", cluster="slurm", **kw)  # type: ignore[arg-type]


def test_missing_script_is_named(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"'nope.py' does not exist.*\n.*HINT"):
        check_spec(JobSpec(entry="nope.py", cluster="slurm"), cwd=tmp_path)


def test_multi_node_needs_ranks_per_node(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("")
    with pytest.raises(LaunchError, match=r"--nodes 2 was given without --gpus or --nproc-per-node.*\n.*HINT"):
        check_spec(spec(nodes=2), cwd=tmp_path)
    check_spec(spec(nodes=2, nproc_per_node=1), cwd=tmp_path)
    check_spec(spec(nodes=1), cwd=tmp_path)


def test_default_partition_is_used_and_fits() -> None:
    assert check_against_cluster(spec(nodes=3, gpus_per_node=4), TABLE).name == "debug"


def test_unknown_partition_suggests_close_names() -> None:
    with pytest.raises(LaunchError, match=r"--partition 'debg' does not exist.*Did you mean 'debug'.*\n.*HINT: use one of: cpu, debug"):
        check_against_cluster(spec(slurm=SlurmOptions(partition="debg")), TABLE)


def test_more_nodes_than_the_partition_has() -> None:
    with pytest.raises(LaunchError, match=r"--nodes 12 asks for more nodes than partition 'debug' has \(3 node\(s\)\).*\n.*HINT: use --nodes 3"):
        check_against_cluster(spec(nodes=12, gpus_per_node=1), TABLE)
    with pytest.raises(LaunchError, match=r"at most 2 per job"):
        check_against_cluster(spec(nodes=3, nproc_per_node=1, slurm=SlurmOptions(partition="cpu")), TABLE)


def test_gpus_on_a_cpu_partition_or_too_many_gpus() -> None:
    with pytest.raises(LaunchError, match="has none.*\n.*--nproc-per-node 2"):
        check_against_cluster(spec(gpus_per_node=2, slurm=SlurmOptions(partition="cpu")), TABLE)
    with pytest.raises(LaunchError, match=r"more GPUs per node.*\(4 per node\)"):
        check_against_cluster(spec(gpus_per_node=8), TABLE)
