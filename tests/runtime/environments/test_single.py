"""SingleProcessEnvironment: the fallback; several ranks asked for are started locally, never in a bare allocation."""

from __future__ import annotations

import pytest

from fulmen.errors import ClusterMismatchError
from fulmen.runtime.environments import SingleProcessEnvironment
from fulmen.runtime.ranks import RankInfo
from tests.slurm.test_environment import BATCH_SHELL


def test_detects_every_process_and_does_not_bring_its_own_ranks() -> None:
    assert SingleProcessEnvironment.detect({}) and SingleProcessEnvironment.detect(BATCH_SHELL)
    assert not SingleProcessEnvironment.creds_from_environment
    info = SingleProcessEnvironment({"FULMEN_RUN_DIR": "/runs/a", "FULMEN_RESTART_COUNT": "2"}).rank_info()
    assert info == RankInfo(run_dir="/runs/a", restart_count=2, source="single")


def test_several_ranks_in_a_batch_shell_are_refused_with_srun_hint() -> None:
    with pytest.raises(ClusterMismatchError, match=r"asks for 4 ranks.*without srun.*\nHINT: .*srun python"):
        SingleProcessEnvironment(BATCH_SHELL).validate(2, 2)


def test_several_ranks_outside_slurm_are_left_to_the_local_launch() -> None:
    SingleProcessEnvironment({}).validate(2, None)
    SingleProcessEnvironment(BATCH_SHELL).validate(1, None)


def test_a_given_rank_info_is_used_instead_of_the_environment() -> None:
    given = RankInfo(run_dir="/given")
    assert SingleProcessEnvironment({"FULMEN_RUN_DIR": "/other"}, rank_info=given).rank_info() is given
