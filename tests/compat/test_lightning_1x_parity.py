"""fulmen runs Lightning 1.x scripts as 1.9.5 did: the scenarios of ``scenarios_1x_optim.py`` and
``scenarios_1x_flags.py`` under fulmen, compared key by key with what pytorch_lightning 1.9.5
recorded in ``reference_1x/`` (Lightning is never imported here). Where fulmen differs on
purpose, ``DELIBERATE_1X_DIFFERENCES`` pins both the 1.9.5 value and fulmen's, with the reason."""

from __future__ import annotations

import difflib
import json
import warnings
from pathlib import Path

import pytest

import fulmen as pl
from tests.compat.normalise import agree
from tests.compat.scenarios_1x_flags import SCENARIOS_1X_FLAGS
from tests.compat.scenarios_1x_optim import REFERENCE_1X_DIR, SCENARIOS_1X

ALL_1X = {**SCENARIOS_1X, **SCENARIOS_1X_FLAGS}

_WARNS_LEGACY = (
    "fulmen is a Lightning 2 API: a 1.x-only spelling warns once (DeprecationWarning) with its modern "
    "form; in 1.9.5 it was the current spelling, so 1.9.5 said nothing"
)
_ACCUMULATION_CALLBACK = (
    "1.9.5 implements every accumulate_grad_batches (an int too) with an internal "
    "GradientAccumulationScheduler callback; fulmen, like 2.x, adds one only for the dict form"
)
_REFUSED_WITHOUT_WARNING = (
    "fulmen refuses tpu_cores/ipus at once with a MisconfigurationException whose HINT names the "
    "modern flags; 1.9.5 first warns that the flag is deprecated, then refuses"
)
# (scenario, key) -> (the 1.9.5 value, fulmen's value, why)
DELIBERATE_1X_DIFFERENCES: dict[tuple[str, str], tuple[object, object, str]] = {
    ("accumulate_grad_batches_dict", "warnings"): ([], ["DeprecationWarning"], _WARNS_LEGACY),
    ("replace_sampler_ddp_off", "warnings"): ([], ["DeprecationWarning"], _WARNS_LEGACY),
    ("tune_with_tuning_off", "warnings"): ([], ["DeprecationWarning"], _WARNS_LEGACY),
    ("tune_auto_lr_find", "warnings"): ([], ["DeprecationWarning"], _WARNS_LEGACY),
    ("tune_auto_scale_batch_size_binsearch", "warnings"): ([], ["DeprecationWarning"], _WARNS_LEGACY),
    ("track_grad_norm_2", "warnings"): ([], ["DeprecationWarning"], _WARNS_LEGACY),
    ("replace_sampler_ddp_off", "callbacks"): (
        ["GradientAccumulationScheduler", "ModelCheckpoint"], ["ModelCheckpoint"], _ACCUMULATION_CALLBACK
    ),
    ("amp_backend_native", "callbacks"): (
        ["GradientAccumulationScheduler", "ModelCheckpoint"], ["ModelCheckpoint"], _ACCUMULATION_CALLBACK
    ),
    ("track_grad_norm_2", "callbacks"): (
        ["GradientAccumulationScheduler", "ModelCheckpoint"], ["ModelCheckpoint"], _ACCUMULATION_CALLBACK
    ),
    ("tune_auto_lr_find", "lr"): (
        0.001165914401179831, 8.576958985908938e-06,
        "same range test (rates and smoothed losses equal 1.9.5's), but the suggestion is Lightning 2.x's: "
        "the steepest slope of loss over learning rate; 1.9.5 took the slope per step index, ignoring the "
        "spacing of the rates, and shifted its index when losses were not finite (its own TODO)",
    ),
    ("tpu_cores_on_cpu", "error"): (
        "ModuleNotFoundError", "MisconfigurationException",
        "1.9.5 fails importing torch_xla (not installed); fulmen has no TPU support and says so clearly",
    ),
    ("tpu_cores_on_cpu", "warnings"): (["DeprecationWarning"], [], _REFUSED_WITHOUT_WARNING),
    ("ipus_on_cpu", "warnings"): (["DeprecationWarning"], [], _REFUSED_WITHOUT_WARNING),
}  # fmt: skip


def _dump(value: object) -> list[str]:
    return json.dumps(value, indent=1, sort_keys=True).splitlines()


def test_every_1x_scenario_is_recorded() -> None:
    recorded = sorted(path.stem for path in REFERENCE_1X_DIR.glob("*.json"))
    assert recorded == sorted(ALL_1X), "a 1.x reference without a scenario, or a 1.x scenario never recorded"
    assert not set(SCENARIOS_1X) & set(SCENARIOS_1X_FLAGS), "two 1.x scenarios share a name"


@pytest.mark.parametrize("name", sorted(ALL_1X))
def test_matches_lightning_1_9(name: str, tmp_path: Path) -> None:
    reference = json.loads((REFERENCE_1X_DIR / f"{name}.json").read_text())
    assert reference["recorded_with"]["pytorch_lightning"] == "1.9.5"
    expected = reference["observed"]
    for (scenario, key), (lightning, fulmen, _why) in DELIBERATE_1X_DIFFERENCES.items():
        if scenario == name:
            assert expected[key] == lightning, f"{name}.{key}: the 1.9.5 reference changed; revisit this deliberate difference"
            expected[key] = fulmen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed = json.loads(json.dumps(ALL_1X[name](pl, tmp_path)))
    assert sorted(observed) == sorted(expected)
    for key in sorted(expected):
        if not agree(expected[key], observed[key]):
            diff = "\n".join(difflib.unified_diff(_dump(expected[key]), _dump(observed[key]), "lightning 1.9.5",
                                                  "fulmen", lineterm=""))  # fmt: skip
            pytest.fail(f"{name}.{key} differs from Lightning 1.9.5:\n{diff}")
