"""fulmen behaves like PyTorch Lightning: the scenarios of ``scenarios.py`` run under fulmen and
are compared with what real Lightning did in them (``reference/*.json``, recorded by
``record_lightning.py``; Lightning itself is never imported here).

One test per scenario compares every top-level key of its observation (floats to within a
last-digit tolerance, ``normalise.agree``: another CPU's float32 kernels round differently);
a failure prints a unified diff per differing key, Lightning on the ``-`` side and fulmen on the ``+`` side. A key
with a known fulmen bug is left out there and gets its own test, so the bug stays visible while
every other key of the scenario still guards its behaviour.

Two kinds of known mismatch are written down here rather than hidden:
- ``FULMEN_BUGS``: fulmen is wrong; the test is ``xfail(strict=True)``, so the suite stays
  green while the bug is open and turns red (XPASS) the day it is fixed, to remove the mark.
- ``DELIBERATE_DIFFERENCES``: fulmen differs on purpose (documented in LIGHTNING_API.md /
  docs/internals.md); the exact Lightning value and the exact fulmen value are both pinned.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import fulmen as pl
from tests.compat.normalise import agree
from tests.compat.scenarios import SCENARIOS

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

# (scenario, key) -> why fulmen is wrong there, with the observed and expected values and the
# fulmen file at fault. Every mismatch the first audit found was fixed in fulmen during it (each
# entry and its removal are in the git history of this file); add new ones here.
FULMEN_BUGS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Deviation:
    """fulmen differs from Lightning on purpose at ``path`` inside one observation."""

    path: tuple[str, ...]
    lightning: Any
    fulmen: Any
    reason: str


_LIGHTNING_FILE_KEYS = [
    "callbacks", "epoch", "global_step", "hparams_name", "hyper_parameters", "loops",
    "lr_schedulers", "optimizer_states", "pytorch-lightning_version", "state_dict",
]  # fmt: skip
_FULMEN_FILE_KEYS = sorted([*_LIGHTNING_FILE_KEYS, "fulmen_version", "loggers"])
_CHECKPOINT_KEYS_REASON = (
    "fulmen writes every key Lightning writes, plus fulmen_version and its loggers' state (the "
    "TensorBoard version a resumed run continues): LIGHTNING_API.md 'Checkpoint file' and "
    "docs/internals.md 'Trainer <-> checkpoints'. Extra keys are harmless to Lightning, which "
    "loads these files (checked by hand with 2.6.6: load_from_checkpoint and fit(ckpt_path=))"
)

_LIGHTNING_WEIGHTS_ONLY_KEYS = [
    "epoch", "global_step", "hparams_name", "hyper_parameters", "loops", "pytorch-lightning_version", "state_dict"
]  # fmt: skip

DELIBERATE_DIFFERENCES: dict[tuple[str, str], list[Deviation]] = {
    ("checkpoint_contents", key): [
        Deviation(("top_level_keys",), _LIGHTNING_FILE_KEYS, _FULMEN_FILE_KEYS, _CHECKPOINT_KEYS_REASON)
    ]
    for key in ("model_checkpoint_file", "save_checkpoint_file")
}
_LOOP_STATE_REASON = (
    "fulmen keeps its exact-resume loop state (batch position, RNG and sampler states at epoch "
    "start, optimizer steps) inside Lightning's layout, under loops.fit_loop.state_dict.fulmen; "
    "Lightning ignores the extra entry and resumes these files (checked by hand with 2.6.6)"
)
for _name, _key in [
    ("checkpoint_contents", "loops.model_checkpoint_file"),
    ("checkpoint_contents", "loops.save_checkpoint_file"),
    ("batch_end_checkpoints", "loops.batch1"),
    ("batch_end_checkpoints", "loops.batch3"),
]:
    DELIBERATE_DIFFERENCES[(_name, _key)] = [
        Deviation(("fit_loop_state_dicts", "state_dict"), {}, {"fulmen": "<nested>"}, _LOOP_STATE_REASON)
    ]
DELIBERATE_DIFFERENCES[("checkpoint_contents", "save_checkpoint_weights_only_file")] = [
    Deviation(
        ("top_level_keys",),
        _LIGHTNING_WEIGHTS_ONLY_KEYS,
        sorted([*_LIGHTNING_WEIGHTS_ONLY_KEYS, "fulmen_version"]),
        "a weights-only file also names the fulmen version that wrote it (no logger state: "
        "weights_only leaves training state out, as Lightning does)",
    )
]

DELIBERATE_DIFFERENCES[("flag_validation", "refused_at_construction")] = [
    Deviation(
        (label,), False, True,
        "fulmen refuses at Trainer() time what Lightning 2.6.6 accepts there: a string max_epochs "
        "(Lightning fails later, inside fit, with a bare TypeError) and negative min_epochs/min_steps "
        "(meaningless; Lightning ignores them). Issue #16 item 9; the messages say seen/expected/HINT",
    )
    for label in ("max_epochs='ten'", "min_epochs=-1", "min_steps=-5")
]  # fmt: skip
_FROZEN_AFTER_RESUME = (
    "Lightning 2.6.6's BaseFinetuning rebuilds the backbone's param group on resume but leaves its "
    "parameters frozen (freeze_before_training ran in setup; nothing unfreezes them again), so a "
    "resumed run silently stops training the backbone. fulmen unfreezes what the callback had "
    "unfrozen (fulmen/callbacks/finetuning.py: _unfreeze_added_groups) so a resume continues exactly"
)
_FROZEN = ["backbone.1.bias", "backbone.1.weight", "layer.bias", "layer.weight"]
DELIBERATE_DIFFERENCES[("finetuning", "resumed")] = [
    Deviation(("after", "backbone_trained"), False, True, _FROZEN_AFTER_RESUME),
    *(
        Deviation((epoch, "trainable"), _FROZEN, sorted([*_FROZEN, "backbone.0.bias", "backbone.0.weight"]),
                  _FROZEN_AFTER_RESUME)
        for epoch in ("epoch_2", "epoch_3")
    ),
]  # fmt: skip


_IN_FLIGHT_BATCH_REASON = (
    "OnExceptionCheckpoint's file, saved after training_step raised: Lightning counts the failed "
    "batch as ready and started (not processed), fulmen's loop state has only finished batches, so "
    "the Lightning layout it writes has ready == started == processed. Both resume at the failed "
    "batch (pinned by the scenario's trained_after_resume), and Lightning 2.6.6 resumes fulmen's file there too"
)
DELIBERATE_DIFFERENCES[("on_exception_checkpoint", "checkpoint")] = [
    Deviation(("batch_progress", scope, counter), lightning, lightning - 1, _IN_FLIGHT_BATCH_REASON)
    for scope, lightning in (("current", 3), ("total", 7))
    for counter in ("ready", "started")
]

_FIT_OPTION_REASON = (
    "Trainer.fit's own option: Lightning 2.6 has weights_only (None: its default), fulmen loads "
    "checkpoints with the safe loader always and names the opt-out unsafe_full_unpickle (Trainer.fit "
    "docstring); LightningCLI adds each Trainer.fit argument as a subcommand option"
)
_CLI_TRAINER_DEFAULTS = [
    Deviation(("trainer", "num_nodes"), 1, None, "Trainer(num_nodes=None) takes the launch's node count "
              "(docs/internals.md 'Topology'); an explicit value is checked against the launch"),
    Deviation(("trainer", "precision"), None, "32-true", "fulmen's Trainer names its default precision "
              "('32-true', what Lightning's None means)"),
]  # fmt: skip
_CLI_SUBCOMMAND_OPTIONS = [
    Deviation(("subcommand_options", 1), ["weights_only", None], ["unsafe_full_unpickle", False], _FIT_OPTION_REASON),
    Deviation(("top_level_keys", 7), "weights_only", "unsafe_full_unpickle", _FIT_OPTION_REASON),
]  # fmt: skip
DELIBERATE_DIFFERENCES[("cli_print_config", "trainer")] = [
    Deviation((d.path[1],), d.lightning, d.fulmen, d.reason) for d in _CLI_TRAINER_DEFAULTS
]
for _d in _CLI_SUBCOMMAND_OPTIONS:
    DELIBERATE_DIFFERENCES[("cli_print_config", _d.path[0])] = [Deviation(_d.path[1:], _d.lightning, _d.fulmen, _d.reason)]
DELIBERATE_DIFFERENCES[("cli_saved_config", "saved")] = [
    *_CLI_TRAINER_DEFAULTS,
    *_CLI_SUBCOMMAND_OPTIONS,
    Deviation(("trainer", "devices"), "1", 1, "Lightning annotates devices list[int] | str | int, so jsonargparse "
              "keeps the text '1'; fulmen's Trainer annotates it Any, so YAML reads 1; both Trainers take either"),
]  # fmt: skip

_FSDP_CPU_REASON = (
    "fulmen runs strategy='fsdp' on CPU (gloo; torch's fully_shard works there), Lightning 2.6.6 refuses FSDP "
    "without CUDA. The checkpoint a one-process FSDP fit writes is pinned equal to the single-device one Lightning "
    "wrote (full state dict, torch.optim's format): README 'Sharded training', docs/internals.md 'Trainer <-> Strategy'"
)
_SINGLE_DEVICE_LAYOUT = {
    "global_step": 2, "optimizer_params": [[0, 1]],
    "optimizer_state": {"0": {"exp_avg": [1, 4], "exp_avg_sq": [1, 4], "step": []},
                        "1": {"exp_avg": [1], "exp_avg_sq": [1], "step": []}},
    "state_dict": {"layer.bias": [1], "layer.weight": [1, 4]}, "state_dict_types": ["Tensor"],
}
DELIBERATE_DIFFERENCES[("strategies_surface", "fsdp_cpu_fit")] = [
    Deviation(("checkpoint",), None, _SINGLE_DEVICE_LAYOUT, _FSDP_CPU_REASON),
    Deviation(("runs",), False, True, _FSDP_CPU_REASON),
]
DELIBERATE_DIFFERENCES[("strategies_surface", "trainer_strategy_refused")] = [
    Deviation(("fsdp",), True, False, _FSDP_CPU_REASON)
]
DELIBERATE_DIFFERENCES[("strategies_surface", "names")] = [
    Deviation((name,), True, False, "fulmen has no DeepSpeed or ModelParallel strategy; asking for one is an "
              "AttributeError naming what it has and what to use instead (fulmen/strategies/__init__.py)")
    for name in ("DeepSpeedStrategy", "ModelParallelStrategy")
]
DELIBERATE_DIFFERENCES[("strategies_surface", "fsdp_arguments_refused")] = [
    Deviation((label,), False, True, reason) for label, reason in [
        ("sharding_strategy='NO_SHARD'", "NO_SHARD is DDP; fulmen says so at construction instead of sharding nothing"),
        ("state_dict_type='sharded'", "fulmen writes full FSDP checkpoints only; refused, not silently full"),
    ]
]  # fmt: skip

DELIBERATE_DIFFERENCES[("compiled_edge_cases", "log_in_compiled_training_step")] = [
    Deviation((key,), lightning, fulmen,
              "Lightning 2.6.6 on torch 2.13 stops inside dynamo when a compiled training_step calls self.log (its "
              "log() inspects self.training_step, a dynamo-wrapped method: \"'method' object has no attribute "
              "'__dict__'\"); fulmen keeps self.log and the other Trainer-facing methods out of dynamo on a compiled "
              "module, so the step compiles up to the call (fulmen/runtime/compiled.py, docs/internals.md 'torch.compile')")
    for key, lightning, fulmen in (("runs", False, True), ("error", "InternalTorchDynamoError", None))
]  # fmt: skip


def _reference(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE_DIR / f"{name}.json").read_text())


_OBSERVED: dict[str, dict[str, Any]] = {}


def _observe(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run a scenario under fulmen once per process; JSON round trip as the recorder does."""
    if name.startswith("metrics_"):
        pytest.importorskip("torchmetrics")  # the optional extra fulmen[metrics] (in dev)
    if name not in _OBSERVED:
        observed = SCENARIOS[name](pl, tmp_path_factory.mktemp(name))
        _OBSERVED[name] = json.loads(json.dumps(observed, sort_keys=True))
    return _OBSERVED[name]


def _apply(expected: Any, deviations: list[Deviation]) -> Any:
    """The Lightning value with the deliberate differences put in; fails if a deviation no
    longer matches the reference (re-recorded with a Lightning that changed there)."""
    for deviation in deviations:
        *parents, leaf = deviation.path
        holder = expected
        for part in parents:
            holder = holder[part]
        assert holder[leaf] == deviation.lightning, (
            f"the reference changed at {deviation.path}: {holder[leaf]!r}, not {deviation.lightning!r}; "
            "revisit this deliberate difference"
        )
        holder[leaf] = deviation.fulmen
    return expected


def _diff(expected: Any, observed: Any) -> str:
    lines = [json.dumps(value, indent=1, sort_keys=True).splitlines() for value in (expected, observed)]
    return "\n".join(difflib.unified_diff(*lines, "lightning", "fulmen", lineterm="", n=3))


def test_references_name_their_lightning_version() -> None:
    recorded = sorted(path.stem for path in REFERENCE_DIR.glob("*.json"))
    assert recorded == sorted(SCENARIOS), "a reference file without a scenario, or a scenario never recorded"
    for name in SCENARIOS:
        document = _reference(name)
        assert document["scenario"] == name
        assert document["recorded_with"]["pytorch_lightning"].startswith("2."), document["recorded_with"]


DELIBERATE_DIFFERENCES[("tuner_scale_batch_size_init_val", "search")] = [
    Deviation(
        ("batch_sizes_tried",), [2, 16, 32], [8, 16, 32],
        "the first trial runs at init_val, as documented; Lightning 2.6.6 sets init_val on the module but "
        "keeps the loader it built with the module's old batch size for that trial, so a first trial that "
        "would run out of memory passes and the search can return a size that does not fit "
        "(fulmen/tuner/batch_size_scaling.py _adjust_batch_size rebuilds the loaders after every change)",
    )
]  # fmt: skip


def _mismatch(name: str, key: str, observed: dict[str, Any]) -> str | None:
    """None when fulmen's ``observed[key]`` equals Lightning's (deliberate differences put in),
    else a unified diff, Lightning on the ``-`` side and fulmen on the ``+`` side."""
    expected = _apply(_reference(name)["observed"][key], DELIBERATE_DIFFERENCES.get((name, key), []))
    value = observed.get(key, "<not observed>")
    if agree(expected, value):
        return None
    return f"{name}/{key} differs from PyTorch Lightning:\n{_diff(expected, value)}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matches_lightning(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every observation of the scenario but the known fulmen bugs (tested below) is Lightning's."""
    observed = _observe(name, tmp_path_factory)
    keys = sorted(_reference(name)["observed"])
    assert sorted(observed) == keys, f"the scenario observed {sorted(observed)}, the reference has {keys}"
    problems = [_mismatch(name, key, observed) for key in keys if (name, key) not in FULMEN_BUGS]
    problems = [problem for problem in problems if problem]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def _known_bug(reason: str) -> pytest.MarkDecorator:
    # raises=: only the mismatch itself is expected; a crash of the scenario is a real failure
    return pytest.mark.xfail(strict=True, reason=reason, raises=pytest.fail.Exception)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        pytest.param(name, key, id=f"{name}/{key}", marks=_known_bug(reason))
        for (name, key), reason in sorted(FULMEN_BUGS.items())
    ],
)
def test_known_fulmen_bug(name: str, key: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A known mismatch, one per bug: it XPASSes (and fails the suite) once fulmen is fixed."""
    problem = _mismatch(name, key, _observe(name, tmp_path_factory))
    if problem:
        pytest.fail(problem, pytrace=False)
