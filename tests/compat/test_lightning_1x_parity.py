"""fulmen runs Lightning 1.x scripts as 1.9.5 did: the scenarios of ``scenarios_1x_optim.py``
under fulmen, compared key by key with what pytorch_lightning 1.9.5 recorded in
``reference_1x/`` (Lightning is never imported here)."""

from __future__ import annotations

import difflib
import json
import warnings
from pathlib import Path

import pytest

import fulmen as pl
from tests.compat.scenarios_1x_optim import REFERENCE_1X_DIR, SCENARIOS_1X


def _dump(value: object) -> list[str]:
    return json.dumps(value, indent=1, sort_keys=True).splitlines()


@pytest.mark.parametrize("name", sorted(SCENARIOS_1X))
def test_matches_lightning_1_9(name: str, tmp_path: Path) -> None:
    reference = json.loads((REFERENCE_1X_DIR / f"{name}.json").read_text())
    assert reference["recorded_with"]["pytorch_lightning"] == "1.9.5"
    expected = reference["observed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed = json.loads(json.dumps(SCENARIOS_1X[name](pl, tmp_path)))
    assert sorted(observed) == sorted(expected)
    for key in sorted(expected):
        if observed[key] != expected[key]:
            diff = "\n".join(difflib.unified_diff(_dump(expected[key]), _dump(observed[key]), "lightning 1.9.5",
                                                  "fulmen", lineterm=""))  # fmt: skip
            pytest.fail(f"{name}.{key} differs from Lightning 1.9.5:\n{diff}")
