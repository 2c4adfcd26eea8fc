"""The Python API's checks that need no cluster (submission itself: tests/integration/slurm)."""

from __future__ import annotations

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec
from fulmen.launcher import api


def test_submit_refuses_other_clusters() -> None:
    with pytest.raises(LaunchError, match="cluster='local'"):
        api.submit(print, spec=JobSpec(entry="x", cluster="local"))


def test_multi_node_callable_needs_ranks_per_node() -> None:
    with pytest.raises(LaunchError, match="nodes=2 without gpus_per_node or nproc_per_node.*\n.*HINT"):
        api.submit(print, spec=JobSpec(entry="x", cluster="slurm", nodes=2))


def test_launch_refuses_other_clusters() -> None:
    with pytest.raises(LaunchError, match="handles cluster='slurm'"):
        api.launch(JobSpec(entry="x", cluster="k8s"))
