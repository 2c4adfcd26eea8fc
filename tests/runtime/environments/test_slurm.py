"""SLURMEnvironment: detection of srun tasks only, SLURM's wording for mismatches, requeue as its hand-off."""

from __future__ import annotations

import sys
import types

import pytest

from fulmen.errors import ClusterMismatchError
from fulmen.jobs.ports import candidate_port
from fulmen.runtime.cluster import detect_environment
from fulmen.runtime.environments import SLURMEnvironment
from fulmen.runtime.environments.slurm import rank_info_from_slurm
from fulmen.runtime.ranks import RankInfo
from tests.slurm.test_environment import BATCH_SHELL, STEP_TASK_RANK3


def test_only_a_step_task_is_detected() -> None:
    assert SLURMEnvironment.detect(STEP_TASK_RANK3)
    assert not SLURMEnvironment.detect(BATCH_SHELL)
    assert not SLURMEnvironment.detect({})


def test_rank_info_main_address_and_port_come_from_the_step() -> None:
    environment = SLURMEnvironment(STEP_TASK_RANK3)
    info = environment.rank_info()
    assert info == rank_info_from_slurm(STEP_TASK_RANK3)
    assert (info.source, info.global_rank, info.world_size, info.num_nodes) == ("slurm", 3, 4, 2)
    assert environment.main_address == "n1"
    assert environment.main_port == candidate_port("37", 0)


def test_reading_a_batch_shell_as_a_step_says_use_srun() -> None:
    with pytest.raises(ClusterMismatchError, match="not a SLURM step task.*\n.*HINT: run it with `srun"):
        SLURMEnvironment(BATCH_SHELL).rank_info()


def test_implicit_topology_is_taken_from_the_step() -> None:
    SLURMEnvironment(STEP_TASK_RANK3).validate(None, None)
    SLURMEnvironment(STEP_TASK_RANK3).validate(2, 2)


def test_explicit_mismatch_is_said_in_slurms_words() -> None:
    environment = SLURMEnvironment(STEP_TASK_RANK3)
    with pytest.raises(ClusterMismatchError, match=r"^Trainer\(num_nodes=1\) expects 1 node\(s\), but this SLURM step"):
        environment.validate(None, 1)
    with pytest.raises(ClusterMismatchError, match=r"HINT: .*--ntasks-per-node=4"):
        environment.validate(4, None)


def test_hand_off_requeues_this_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[RankInfo] = []
    module = types.ModuleType("fulmen.slurm.requeue")
    module.requeue_job = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fulmen.slurm.requeue", module)
    environment = SLURMEnvironment(STEP_TASK_RANK3)
    environment.hand_off()
    assert calls == [environment.rank_info()]


def test_forced_slurm_in_a_batch_shell_names_the_override() -> None:
    with pytest.raises(ClusterMismatchError, match=r"^FULMEN_CLUSTER=slurm, but this process is not a SLURM step"):
        detect_environment({**BATCH_SHELL, "FULMEN_CLUSTER": "slurm"})
