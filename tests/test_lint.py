"""The code passes ruff with the rules in pyproject.toml ([tool.ruff]): the suite keeps it so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    beside_python = Path(sys.executable).parent / "ruff"
    ruff = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed.\nHINT: pip install -e '.[dev]' (it brings ruff).")
    proc = subprocess.run([ruff, "check", "--no-cache", "fulmen", "tests", "examples", "bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"ruff found problems (fix them, or `ruff check --fix`):\n{proc.stdout}\n{proc.stderr}"
