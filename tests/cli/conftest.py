"""The CLI under test parses ``args=``: pytest's own argv must not look like extra command-line
arguments, and a seed an earlier test exported (``PL_GLOBAL_SEED``) must not become the default."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def bare_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
