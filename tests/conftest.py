"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
