"""fulmen.slurm.commands and the nodelist parser against the real controller."""

from __future__ import annotations

import pytest

from fulmen.slurm import commands
from fulmen.slurm.environment import expand_nodelist

pytestmark = [pytest.mark.slurm, pytest.mark.integration]


@pytest.mark.parametrize("nodelist", ["n[1-3],c", "gpu[01-02,05]", "rack[1-2]-n[1-2]", "a1,b[3-4],c[007-009]", "n[9-11]"])
def test_expand_nodelist_agrees_with_scontrol(slurm_cluster: str, nodelist: str) -> None:
    assert expand_nodelist(nodelist) == commands.show_hostnames(nodelist)


def test_partitions_of_the_test_cluster(slurm_cluster: str) -> None:
    partitions = commands.list_partitions()
    assert {"debug", "low", "high"} <= set(partitions)
    debug = partitions["debug"]
    assert debug.is_default and debug.total_nodes == 3 and debug.gpus_per_node == 4


def test_unknown_job_is_unknown(slurm_cluster: str) -> None:
    assert commands.job_state("999999").state == "UNKNOWN"
    assert commands.accounting_enabled()
