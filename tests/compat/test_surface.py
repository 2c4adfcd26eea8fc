"""Every public name of PyTorch Lightning 2.6 exists in fulmen at the same path, or is excluded here.

The names come from ``reference_surface/lightning_surface.json``, recorded from the real library
by ``record_surface.py`` (Lightning is never imported here): the public names of its modules,
``Trainer.__init__``'s parameters and defaults, and the members of ``LightningModule``,
``LightningDataModule`` and ``Trainer``. A script written for Lightning reaches them as ``pl.<path>`` after
``import fulmen as pl``, or as ``from fulmen.<module> import <name>``; both are checked.

A name fulmen does not have is listed below with a one-line reason, in one of two groups. The
lists stay honest both ways: a recorded name that is neither present nor excluded fails, and an
exclusion for a name fulmen now has fails too (stale), as does one naming nothing Lightning has.
Keys: ``"callbacks.Timer"`` (module path and name; top-level names bare), ``"profilers.*"`` (the
whole module, and ``pl.profilers`` itself, is absent), ``"Trainer.__init__.num_nodes"`` (missing,
or another default), ``"LightningModule.fabric"``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fulmen as pl

REFERENCE = Path(__file__).resolve().parent / "reference_surface" / "lightning_surface.json"
SURFACE: dict[str, Any] = json.loads(REFERENCE.read_text())
TRAINER_INIT = "Trainer.__init__."

# Lightning has it, fulmen does not (yet): each reason says what a user gets instead, if anything.
NOT_BUILT: dict[str, str] = {
    "accelerators.*": "not built: the device comes from Trainer(accelerator='cpu'|'gpu'|'cuda'|'auto'), no Accelerator classes",
    "plugins.*": "not built: no plugin objects; Trainer(plugins=...) is accepted and ignored with a warning",
    "profilers.*": "not built: no profilers; Trainer(profiler=...) is accepted and ignored with a warning",
    "strategies.DeepSpeedStrategy": "not built: no DeepSpeed integration",
    "strategies.ModelParallelStrategy": "not built: no tensor parallelism (device meshes)",
    "loggers.CometLogger": "not built: no Comet logger",
    "loggers.LitLogger": "not built: Lightning AI's hosted experiment service",
    "callbacks.BasePredictionWriter": "not built: write predictions from on_predict_batch_end in a plain Callback",
    "callbacks.EMAWeightAveraging": "not built: 2.6's weight-averaging callbacks",
    "callbacks.WeightAveraging": "not built: 2.6's weight-averaging callbacks",
    "callbacks.LambdaCallback": "not built: subclass Callback instead",
    "callbacks.ModelPruning": "not built: no pruning callback",
    "callbacks.SpikeDetection": "not built: no loss-spike detection",
    "callbacks.ThroughputMonitor": "not built: no throughput callback",
    "utilities.CombinedLoader": "not built at this path: fulmen.runtime.combined_loader does fit's max_size_cycle only, without modes",
    "utilities.GradClipAlgorithmType": "not built: gradient_clip_algorithm takes the strings 'norm' / 'value'",
    "utilities.LightningEnum": "not built: fulmen's enums are plain str enums (fulmen.runtime.stages)",
    "utilities.disable_possible_user_warnings": "not built: filter warnings with the warnings module",
    "utilities.find_shared_parameters": "not built: no parameter-tying helpers",
    "utilities.set_shared_parameters": "not built: no parameter-tying helpers",
    "utilities.is_shared_filesystem": "not built: no shared-filesystem probe",
    "utilities.measure_flops": "not built: fulmen counts FLOPs only for ModelSummary (fulmen.utilities.flops)",
    "utilities.move_data_to_device": "not exported here: fulmen's is fulmen.core.hooks.move_data_to_device, a layer above",
    "utilities.suggested_max_num_workers": "not built: no DataLoader num_workers advice",
    "utilities.exceptions.SIGTERMException": "not built: SIGTERM is a preemption stop at a step boundary, never an exception",
    "utilities.model_summary.DeepSpeedSummary": "not built: no DeepSpeed integration",
    "utilities.types.LRSchedulerConfig": "not at this path: fulmen.runtime.optim.LRSchedulerConfig (same fields), a layer above",
    "LightningModule.fabric": "not built: no Lightning Fabric",
    "LightningModule.device_mesh": "not built: no tensor parallelism (device meshes)",
    "LightningModule.to_tensorrt": "not built: no TensorRT export (to_onnx and to_torchscript are there)",
    "Trainer.profiler": "not built: no profilers; Trainer(profiler=...) is accepted and ignored with a warning",
    "Trainer.received_sigterm": "not built: SIGTERM is a preemption stop at a step boundary (runtime/preemption.py)",
}

# fulmen differs on purpose, or the name is Lightning's internal / deprecated.
ON_PURPOSE: dict[str, str] = {
    "cli.ModuleType": "internal: a TypeVar in the signatures of Lightning's cli.py",
    "utilities.rank_zero.rank_zero_module": "internal: lightning_fabric's holder of the rank-zero logger",
    "utilities.types.DistributedDataParallel": "internal: Lightning's typing Protocol; annotate with torch's class",
    "LightningModule.configure_sharded_model": "deprecated in 2.x: configure_model replaces it (fulmen calls that)",
    "LightningModule.train_dataloader": "deliberate: fulmen finds 'no such loader' by the method's absence, Lightning by is_overridden",
    "LightningModule.val_dataloader": "deliberate: fulmen finds 'no such loader' by the method's absence, Lightning by is_overridden",
    "LightningModule.test_dataloader": "deliberate: fulmen finds 'no such loader' by the method's absence, Lightning by is_overridden",
    "LightningModule.predict_dataloader": "deliberate: fulmen finds 'no such loader' by the method's absence, Lightning by is_overridden",
    "LightningModule.validation_step": "deliberate: no validation_step means no validation loop (Lightning: is_overridden)",
    "LightningModule.test_step": "deliberate: no test_step means trainer.test() is refused (Lightning: is_overridden)",
    "Trainer.validate_loop": "deliberate: one EvaluationLoop (trainer.evaluation_loop) runs validate, test and predict",
    "Trainer.test_loop": "deliberate: one EvaluationLoop (trainer.evaluation_loop) runs validate, test and predict",
    "Trainer.predict_loop": "deliberate: one EvaluationLoop (trainer.evaluation_loop) runs validate, test and predict",
    "Trainer.__init__.num_nodes": "deliberate: default None means the topology the launcher started (Trainer docstring)",
    "Trainer.__init__.precision": "same meaning: the default is spelled '32-true', what Lightning's None resolves to (None works)",
}

EXCLUDED: dict[str, str] = {**NOT_BUILT, **ON_PURPOSE}
HINT = (
    "HINT: add the name to fulmen at Lightning's path (the package's lazy _TABLE), or list it in one "
    "exclusion dict of tests/compat/test_surface.py with a one-line honest reason"
)


def _fulmen_module(path: str) -> ModuleType | None:
    """``fulmen.<path>`` imported, or None if fulmen has no such module (any other import error raises)."""
    name = f"fulmen.{path}" if path else "fulmen"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and name.startswith(error.name):
            return None
        raise


def _split(key: str) -> tuple[str, str]:
    module, _, name = key.rpartition(".")
    return module, name


@functools.cache
def _probe(owner: str) -> Any:
    """An instance of ``pl.<owner>``, so that attributes its ``__init__`` sets count too."""
    if owner == "Trainer":
        return pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    return type(f"Probe{owner}", (getattr(pl, owner),), {})()


def _has_member(owner: str, name: str) -> bool:
    return name in dir(getattr(pl, owner)) or name in vars(_probe(owner))


def fulmen_has(key: str) -> bool:
    """Whether fulmen offers what the key names, the way Lightning does (see the module docstring)."""
    if key.startswith(TRAINER_INIT):
        name = key[len(TRAINER_INIT) :]
        parameter = inspect.signature(pl.Trainer.__init__).parameters.get(name)
        if parameter is None:
            return False
        default = "<required>" if parameter.default is inspect.Parameter.empty else repr(parameter.default)
        return default == SURFACE["trainer_init"][name]
    owner, name = _split(key)
    if owner in SURFACE["members"]:
        return _has_member(owner, name)
    if name == "*":
        return _fulmen_module(owner) is not None
    module = _fulmen_module(owner)
    if module is None:
        return False
    try:
        value = getattr(module, name)
    except AttributeError:
        return False
    except ImportError as error:  # the name is there, on an optional extra this environment lacks
        if "fulmen[" in str(error):
            return True
        raise
    if module is pl and SURFACE["modules"][""][name] == "module":
        return _fulmen_module(name) is not None  # `from fulmen.callbacks import X` must work too
    return SURFACE["modules"][owner][name] != "class" or inspect.isclass(value)


def _recorded_keys() -> list[str]:
    keys = [f"{path}.{name}" if path else name for path, names in SURFACE["modules"].items() for name in names]
    keys += [TRAINER_INIT + name for name in SURFACE["trainer_init"]]
    keys += [f"{cls}.{name}" for cls, members in SURFACE["members"].items() for name in members]
    return keys


def _excluded(key: str) -> bool:
    if key in EXCLUDED:
        return True
    owner, _ = _split(key)
    return f"{owner}.*" in EXCLUDED or f"{key}.*" in EXCLUDED  # inside an absent module, or that module


def _group(key: str) -> str:
    if key.startswith(TRAINER_INIT):
        return "Trainer.__init__"
    owner, _ = _split(key)
    return owner if owner in SURFACE["members"] else owner or "<top level>"


GROUPS = sorted({_group(key) for key in _recorded_keys()})


def test_reference_was_recorded_from_lightning_2_6() -> None:
    assert SURFACE["recorded_with"]["pytorch_lightning"].startswith("2.6."), SURFACE["recorded_with"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_lightning_name_exists_in_fulmen_or_is_excluded(group: str) -> None:
    missing = [key for key in _recorded_keys() if _group(key) == group and not _excluded(key) and not fulmen_has(key)]
    assert not missing, f"Lightning 2.6 has these, fulmen does not (or not as a class / with that default): {missing}\n{HINT}"


def test_no_exclusion_is_stale() -> None:
    stale = sorted(key for key in EXCLUDED if fulmen_has(key))
    assert not stale, (
        f"fulmen has these now, so their exclusions are stale: {stale}\n"
        "HINT: delete their lines from the exclusion dicts in tests/compat/test_surface.py"
    )


def test_every_exclusion_names_something_lightning_has_with_a_one_line_reason() -> None:
    recorded = set(_recorded_keys())
    unknown = [key for key in EXCLUDED if key not in recorded and not (key.endswith(".*") and key[:-2] in recorded)]
    assert not unknown, f"excluded names Lightning 2.6 does not have (typos?): {unknown}"
    groups = [NOT_BUILT, ON_PURPOSE]
    assert sum(len(group) for group in groups) == len(EXCLUDED), "a name is excluded in two groups"
    unclear = [key for key, reason in EXCLUDED.items() if not reason or "\n" in reason or len(reason) > 120]
    assert not unclear, f"each reason is one short line: {unclear}"
