"""SLURM environment -> RankInfo, nodelist syntax, and allocation checks, on plain dicts."""

from __future__ import annotations

import pytest

from fulmen.errors import ClusterMismatchError
from fulmen.jobs import ports
from fulmen.slurm import environment as env

# What task rank 3 of `sbatch --nodes=2 --ntasks-per-node=2 --gpus-per-node=2` + srun sees
# (copied from ../shared/slurm/README.md, "What a job sees").
STEP_TASK_RANK3 = {
    "SLURMD_NODENAME": "n2",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURM_NTASKS": "4",
    "SLURM_NNODES": "2",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_NODELIST": "n[1-2]",
    "SLURM_STEP_NODELIST": "n[1-2]",
    "SLURM_TASKS_PER_NODE": "2(x2)",
    "SLURM_JOB_ID": "37",
    "SLURM_JOBID": "37",
    "SLURM_STEP_ID": "0",
    "SLURM_STEPID": "0",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    "CUDA_VISIBLE_DEVICES": "0,1",
}

# The batch shell of the same job: job-level variables, PROCID 0, no SLURM_STEP_*.
BATCH_SHELL = {k: v for k, v in STEP_TASK_RANK3.items() if not k.startswith("SLURM_STEP")}
BATCH_SHELL.update(SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURMD_NODENAME="n1")


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("n1", ["n1"]),
        ("n[1-3],c", ["n1", "n2", "n3", "c"]),
        ("gpu[01-02,05]", ["gpu01", "gpu02", "gpu05"]),
        ("n[9-11]", ["n9", "n10", "n11"]),
        ("node-[1-2]", ["node-1", "node-2"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("a1,b[3-4],c[007-009]", ["a1", "b3", "b4", "c007", "c008", "c009"]),
    ],
)
def test_expand_nodelist_matches_scontrol_show_hostnames(nodelist: str, hosts: list[str]) -> None:
    # Expected values were produced by `scontrol show hostnames` (slurm 22.05).
    assert env.expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["n[1-3", "n1-3]", "n[3-1]", "n[a-b]"])
def test_expand_nodelist_rejects_malformed_lists(bad: str) -> None:
    with pytest.raises(ValueError, match="nodelist"):
        env.expand_nodelist(bad)


def test_parse_tasks_per_node_expands_repeats() -> None:
    assert env.parse_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert env.parse_tasks_per_node("4") == [4]
    with pytest.raises(ValueError):
        env.parse_tasks_per_node("2(y3)")


def test_step_task_gives_ranks_node_and_master_from_step_nodelist() -> None:
    info = env.rank_info_from_slurm(STEP_TASK_RANK3)
    assert info is not None
    assert (info.global_rank, info.local_rank, info.node_rank) == (3, 1, 1)
    assert (info.world_size, info.local_world_size, info.num_nodes) == (4, 2, 2)
    assert info.master_addr == "n1"
    assert info.job_id == "37"
    assert info.restart_count == 0
    assert info.source == "slurm"
    assert info.master_port == ports.candidate_port("37", 0)


def test_master_addr_comes_from_step_nodelist_not_job_nodelist() -> None:
    # A step on a subset of the allocation: its first host is the rendezvous host.
    environ = dict(STEP_TASK_RANK3, SLURM_JOB_NODELIST="n[1-3]", SLURM_STEP_NODELIST="n[2-3]")
    info = env.rank_info_from_slurm(environ)
    assert info is not None and info.master_addr == "n2"


def test_master_addr_and_port_overrides_win() -> None:
    environ = dict(STEP_TASK_RANK3, MASTER_ADDR="10.0.0.1", MASTER_PORT="29400", FULMEN_RUN_DIR="/runs/a")
    info = env.rank_info_from_slurm(environ)
    assert info is not None
    assert (info.master_addr, info.master_port, info.run_dir) == ("10.0.0.1", 29400, "/runs/a")


def test_batch_shell_is_not_a_multi_rank_job() -> None:
    assert env.in_slurm_allocation(BATCH_SHELL)
    assert not env.is_step_task(BATCH_SHELL)
    assert env.rank_info_from_slurm(BATCH_SHELL) is None


def test_salloc_shell_and_batch_step_are_not_tasks() -> None:
    salloc = {"SLURM_JOB_ID": "5", "SLURM_NTASKS": "4", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "n[1-2]"}
    assert env.rank_info_from_slurm(salloc) is None
    batch_step = dict(STEP_TASK_RANK3, SLURM_STEP_ID="batch", SLURM_STEPID="batch")
    assert env.rank_info_from_slurm(batch_step) is None
    assert env.rank_info_from_slurm({}) is None


def test_restart_count_is_zero_when_unset_then_follows_slurm() -> None:
    assert env.restart_count({}) == 0
    info = env.rank_info_from_slurm(dict(STEP_TASK_RANK3, SLURM_RESTART_COUNT="2"))
    assert info is not None and info.restart_count == 2
    # A requeued run gets a fresh port (the old one may linger in TIME_WAIT).
    assert info.master_port == ports.candidate_port("37", 2)


def test_array_task_job_id_is_array_aware() -> None:
    environ = dict(STEP_TASK_RANK3, SLURM_ARRAY_JOB_ID="40", SLURM_ARRAY_TASK_ID="3")
    assert env.slurm_job_id(environ) == "40_3"
    info = env.rank_info_from_slurm(environ)
    assert info is not None and info.job_id == "40_3"


def test_uneven_tasks_per_node_gives_this_nodes_local_world_size() -> None:
    environ = dict(STEP_TASK_RANK3, SLURM_STEP_TASKS_PER_NODE="3,1", SLURM_PROCID="3", SLURM_LOCALID="0")
    info = env.rank_info_from_slurm(environ)
    assert info is not None and info.local_world_size == 1


def test_validate_allocation_accepts_a_match() -> None:
    info = env.rank_info_from_slurm(STEP_TASK_RANK3)
    assert info is not None
    env.validate_allocation(info, devices=2, num_nodes=2)


def test_validate_allocation_devices_mismatch_has_hint() -> None:
    info = env.rank_info_from_slurm(STEP_TASK_RANK3)
    assert info is not None
    with pytest.raises(ClusterMismatchError, match=r"devices=4.*\n.*HINT: leave devices out .* take the step's 2"):
        env.validate_allocation(info, devices=4, num_nodes=2)


def test_validate_allocation_num_nodes_mismatch_has_hint() -> None:
    info = env.rank_info_from_slurm(STEP_TASK_RANK3)
    assert info is not None
    with pytest.raises(ClusterMismatchError, match=r"num_nodes=1.*\n.*HINT: leave num_nodes out .* take the step's 2"):
        env.validate_allocation(info, devices=2, num_nodes=1)


def test_unlaunched_allocation_with_several_devices_is_refused() -> None:
    with pytest.raises(ClusterMismatchError, match="without srun.*\n.*HINT: .*srun python"):
        env.validate_not_unlaunched_allocation(BATCH_SHELL, devices=2, num_nodes=2)
    # One process asked for: fine in a batch shell; and a real task is not refused either.
    env.validate_not_unlaunched_allocation(BATCH_SHELL, devices=1, num_nodes=1)
    env.validate_not_unlaunched_allocation(STEP_TASK_RANK3, devices=2, num_nodes=2)
    env.validate_not_unlaunched_allocation({}, devices=2, num_nodes=1)
