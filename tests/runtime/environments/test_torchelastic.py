"""TorchElasticEnvironment: launch/torchrun variables, the common topology check, no hand-off."""

from __future__ import annotations

import pytest

from fulmen.errors import ClusterMismatchError
from fulmen.runtime.environments import TorchElasticEnvironment
from tests.runtime.test_cluster import TORCHRUN_RANK_3_OF_4


def test_either_variable_claims_the_process_so_a_half_pair_is_reported() -> None:
    assert TorchElasticEnvironment.detect(TORCHRUN_RANK_3_OF_4)
    assert TorchElasticEnvironment.detect({"WORLD_SIZE": "2"})
    assert not TorchElasticEnvironment.detect({"SLURM_PROCID": "0", "LOCAL_RANK": "0"})
    with pytest.raises(ClusterMismatchError, match="WORLD_SIZE is set but RANK is not"):
        TorchElasticEnvironment({"WORLD_SIZE": "2"}).rank_info()


def test_rendezvous_and_ranks_from_torchrun_variables() -> None:
    environment = TorchElasticEnvironment(TORCHRUN_RANK_3_OF_4)
    assert (environment.main_address, environment.main_port) == ("node-a", 29512)
    info = environment.rank_info()
    assert (info.source, info.global_rank, info.local_world_size, info.num_nodes) == ("env", 3, 2, 2)
    assert TorchElasticEnvironment.creds_from_environment


def test_validate_names_the_launch_and_leaves_implicit_values_alone() -> None:
    environment = TorchElasticEnvironment(TORCHRUN_RANK_3_OF_4)
    environment.validate(None, None)
    environment.validate(2, 2)
    with pytest.raises(ClusterMismatchError, match=r"Trainer\(devices=4\).*by launch/torchrun.*\nHINT: leave devices"):
        environment.validate(4, None)


def test_hand_off_leaves_the_restart_to_the_launcher() -> None:
    assert TorchElasticEnvironment(TORCHRUN_RANK_3_OF_4).hand_off() is None
