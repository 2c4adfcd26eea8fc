"""The CLI under test parses ``args=``; pytest's own argv must not look like extra command-line arguments."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def bare_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
