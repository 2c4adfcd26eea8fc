"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Several pytest-xdist workers share 2 cores: torch's intra-op thread pool per process
# oversubscribes them (a tiny model ran ~30x slower). One thread per process, children included.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def python_exe() -> str:
    """The interpreter running the tests (the venv's), for subprocesses."""
    return sys.executable


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child processes: the checkout importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hand the slowest tests (real SLURM jobs, then other process-starting tests) out first.

    pytest-xdist schedules in collection order; a multi-minute SLURM test collected last would
    run alone at the end while the other workers idle.
    """

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slurm"):
            return 0
        if item.get_closest_marker("integration") or item.get_closest_marker("slow"):
            return 1
        return 2

    items.sort(key=rank)  # stable: the order within each group is kept
