"""Rank detection: every branch of fulmen.runtime.cluster.detect with plain dicts."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from fulmen.errors import ClusterMismatchError
from fulmen.runtime.cluster import detect, detect_environment, environment_for, rank_info_from_env
from fulmen.runtime.environments import SingleProcessEnvironment, SLURMEnvironment, TorchElasticEnvironment
from fulmen.runtime.ranks import RankInfo
from tests.slurm.test_environment import BATCH_SHELL, STEP_TASK_RANK3

TORCHRUN_RANK_3_OF_4 = {
    "RANK": "3",
    "LOCAL_RANK": "1",
    "WORLD_SIZE": "4",
    "LOCAL_WORLD_SIZE": "2",
    "GROUP_RANK": "1",
    "MASTER_ADDR": "node-a",
    "MASTER_PORT": "29512",
    "TORCHELASTIC_RESTART_COUNT": "2",
    "TORCHELASTIC_RUN_ID": "abc",
}


def test_empty_environment_is_a_single_process() -> None:
    info = detect({})
    assert info == RankInfo()
    assert info.source == "single" and not info.is_distributed


def test_single_process_keeps_run_dir_and_restart_count() -> None:
    info = detect({"FULMEN_RUN_DIR": "/runs/a", "FULMEN_RESTART_COUNT": "1"})
    assert (info.source, info.run_dir, info.restart_count) == ("single", "/runs/a", 1)


def test_torchrun_variables_give_every_field() -> None:
    info = detect(TORCHRUN_RANK_3_OF_4)
    assert info == RankInfo(
        global_rank=3,
        local_rank=1,
        world_size=4,
        local_world_size=2,
        node_rank=1,
        num_nodes=2,
        master_addr="node-a",
        master_port=29512,
        job_id="abc",
        restart_count=2,
        run_dir=None,
        source="env",
    )


def test_fulmen_variables_win_over_torchelastic_ones() -> None:
    env = {**TORCHRUN_RANK_3_OF_4, "FULMEN_RESTART_COUNT": "5", "FULMEN_RUN_DIR": "/r", "FULMEN_JOB_ID": "j"}
    info = detect(env)
    assert (info.restart_count, info.run_dir, info.job_id) == (5, "/r", "j")


def test_minimal_env_derives_local_fields() -> None:
    info = detect({"RANK": "1", "WORLD_SIZE": "2"})
    assert (info.local_rank, info.local_world_size, info.num_nodes, info.node_rank) == (1, 2, 1, 0)
    assert info.master_port is None


def test_rank_without_world_size_is_an_error_naming_both() -> None:
    with pytest.raises(ClusterMismatchError, match="RANK is set but WORLD_SIZE is not"):
        detect({"RANK": "0"})


def test_world_size_not_multiple_of_local_world_size() -> None:
    with pytest.raises(ClusterMismatchError, match="WORLD_SIZE=3 is not a multiple of LOCAL_WORLD_SIZE=2"):
        rank_info_from_env({"RANK": "0", "WORLD_SIZE": "3", "LOCAL_WORLD_SIZE": "2"})


def test_non_integer_variable_is_named() -> None:
    with pytest.raises(ClusterMismatchError, match="RANK='x'"):
        detect({"RANK": "x", "WORLD_SIZE": "2"})


def test_override_single_ignores_launcher_variables() -> None:
    assert detect({**TORCHRUN_RANK_3_OF_4, "FULMEN_CLUSTER": "single"}).source == "single"


def test_override_env_without_variables_has_hint() -> None:
    with pytest.raises(ClusterMismatchError, match="HINT"):
        detect({"FULMEN_CLUSTER": "env"})


def test_unknown_override_lists_choices() -> None:
    with pytest.raises(ClusterMismatchError, match="single, env, slurm"):
        detect({"FULMEN_CLUSTER": "k8s"})


@pytest.fixture
def fake_slurm_environment(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """A stand-in for the SLURM environment's detection that records what it was asked."""
    seen: list[dict[str, str]] = []

    def detect_step(cls: type[SLURMEnvironment], environ: Mapping[str, str]) -> bool:
        seen.append(dict(environ))
        return "SLURM_STEP_ID" in environ

    def read_rank_info(self: SLURMEnvironment) -> RankInfo:
        rank = int(self.environ["SLURM_PROCID"])
        return RankInfo(global_rank=rank, world_size=2, local_world_size=2, local_rank=rank, source="slurm")

    monkeypatch.setattr(SLURMEnvironment, "detect", classmethod(detect_step))
    monkeypatch.setattr(SLURMEnvironment, "read_rank_info", read_rank_info)
    return seen


def test_slurm_detection_is_delegated(fake_slurm_environment: list[dict[str, str]]) -> None:
    info = detect({"SLURM_PROCID": "1", "SLURM_STEP_ID": "0"})
    assert (info.source, info.global_rank) == ("slurm", 1)
    assert fake_slurm_environment == [{"SLURM_PROCID": "1", "SLURM_STEP_ID": "0"}]


def test_slurm_batch_shell_is_a_single_process(fake_slurm_environment: list[dict[str, str]]) -> None:
    assert detect({"SLURM_JOB_ID": "7"}).source == "single"


def test_launcher_variables_beat_slurm(fake_slurm_environment: list[dict[str, str]]) -> None:
    info = detect({**TORCHRUN_RANK_3_OF_4, "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"})
    assert info.source == "env"
    assert fake_slurm_environment == []


def test_forced_slurm_outside_a_step_has_hint(fake_slurm_environment: list[dict[str, str]]) -> None:
    with pytest.raises(ClusterMismatchError, match="srun"):
        detect({"FULMEN_CLUSTER": "slurm"})


# --- the environments behind detect(): one order, each class owns its part ---------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, SingleProcessEnvironment),
        (BATCH_SHELL, SingleProcessEnvironment),
        (STEP_TASK_RANK3, SLURMEnvironment),
        ({**STEP_TASK_RANK3, **TORCHRUN_RANK_3_OF_4}, TorchElasticEnvironment),
        ({**STEP_TASK_RANK3, "FULMEN_CLUSTER": "single"}, SingleProcessEnvironment),
    ],
)
def test_detect_environment_walks_one_order(environ: dict[str, str], expected: type) -> None:
    environment = detect_environment(environ)
    assert type(environment) is expected
    assert environment.rank_info().source == expected.name


def test_environment_for_a_rank_info_describes_that_rank() -> None:
    info = RankInfo(world_size=2, local_world_size=2, source="slurm")
    environment = environment_for(info, {})
    assert isinstance(environment, SLURMEnvironment) and environment.rank_info() is info
    with pytest.raises(ClusterMismatchError, match="source='k8s'.*single, env, slurm"):
        environment_for(RankInfo(source="k8s"))
