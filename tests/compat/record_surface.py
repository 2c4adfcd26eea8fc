"""Record the public names of PyTorch Lightning 2.x as reference JSON, for ``test_surface.py``.

Run once, by hand, with the scratch venv that has the real library (never a project dependency):

    PYTHONPATH=. /work/venvs/pl26/bin/python tests/compat/record_surface.py

Writes ``tests/compat/reference_surface/lightning_surface.json`` (beside, not inside, the
scenario references). What counts as public, per module in ``MODULES``:

- the module's ``__all__`` where it has one;
- otherwise (``pl.tuner``, ``pl.cli``, the ``utilities.*`` modules) the names its source binds
  at top level by ``def``/``class``/assignment, plus the names it imports from inside its own
  package or marks as a re-export (``# noqa: F401``): not the names it merely uses (``os``,
  ``Optional``, another package's classes). Underscore names are never public.

Besides modules: ``Trainer.__init__``'s parameters with their defaults, and the public
members of ``LightningModule``, ``LightningDataModule`` and ``Trainer`` (not those
``torch.nn.Module`` or ``object`` already give; the Trainer's include what its ``__init__`` sets). The output is stable (sorted keys), so re-recording with the same
version gives an identical file and a new version shows its surface changes as a git diff.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "reference_surface" / "lightning_surface.json"

# Lightning's public modules users import from ("" is the top level). loops, overrides,
# serve and trainer.* are Lightning's internals (its docs never send users there).
MODULES = [
    "",
    "accelerators",
    "callbacks",
    "cli",
    "core",
    "loggers",
    "plugins",
    "profilers",
    "strategies",
    "tuner",
    "utilities",
    "utilities.exceptions",
    "utilities.model_summary",
    "utilities.rank_zero",
    "utilities.seed",
    "utilities.types",
]


# a Trainer built only to list its attributes: nothing printed, nothing written
QUIET_TRAINER = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}


def kind_of(value: Any) -> str:
    """``class``, ``module``, ``function``, ``type alias`` or ``object``: what a user can do with the name."""
    if type(value).__module__ in ("typing", "types", "typing_extensions") and not isinstance(value, ModuleType):
        return "type alias"  # Union[...], Optional[...], a TypeVar: only for annotations
    if getattr(value, "__module__", None) == "typing":
        return "type alias"  # typing.Any and friends, which are classes on newer Pythons
    if inspect.isclass(value):
        return "class"
    if isinstance(value, ModuleType):
        return "module"
    if callable(value):
        return "function"
    return "object"


def _bound_in_source(module: ModuleType) -> set[str]:
    """Names a module without ``__all__`` binds itself or re-exports on purpose (see the module docstring)."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    package = module.__name__
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            inside = node.level > 0 or (node.module or "").startswith(package + ".")
            reexport = "noqa: F401" in lines[node.lineno - 1]
            if inside or reexport:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def public_names(module: ModuleType) -> dict[str, str]:
    """``{name: kind}`` of the module's public names (``__all__``, else what its source binds)."""
    declared = getattr(module, "__all__", None)
    names = set(declared) if declared is not None else _bound_in_source(module)
    return {name: kind_of(getattr(module, name)) for name in sorted(names) if not name.startswith("_")}


def init_parameters(cls: type) -> dict[str, str]:
    """``{parameter: repr(default)}`` of ``cls.__init__`` (``"<required>"`` without a default)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: "<required>" if p.default is inspect.Parameter.empty else repr(p.default)
        for p in parameters
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def members(cls: type, *bases: type, instance: Any = None) -> dict[str, str]:
    """``{name: "property" | "method" | "attribute"}`` of public members that ``bases`` do not have.

    With ``instance``, the attributes its ``__init__`` sets count too (the Trainer keeps its flags so).
    """
    inherited = set().union(*(dir(base) for base in bases))
    own = set(vars(instance)) if instance is not None else set()
    found = {}
    for name in sorted((set(dir(cls)) | own) - inherited):
        if name.startswith("_"):
            continue
        if name not in dir(cls):
            found[name] = "attribute"
            continue
        static = inspect.getattr_static(cls, name)
        if isinstance(static, property):
            found[name] = "property"
        elif callable(static) or isinstance(static, (staticmethod, classmethod)):
            found[name] = "method"
        else:
            found[name] = "attribute"
    return found


def record() -> dict[str, Any]:
    """The whole surface of the running interpreter's ``pytorch_lightning``."""
    import pytorch_lightning as pl
    import torch

    modules = {}
    for path in MODULES:
        module = importlib.import_module("pytorch_lightning" + (f".{path}" if path else ""))
        modules[path] = public_names(module)
    # the subpackages users reach as attributes (pl.callbacks.X) count as top-level names
    modules[""].update({path: "module" for path in MODULES if path and "." not in path})
    return {
        "recorded_with": {"pytorch_lightning": pl.__version__, "torch": torch.__version__.split("+")[0]},
        "modules": modules,
        "trainer_init": init_parameters(pl.Trainer),
        "members": {
            "LightningModule": members(pl.LightningModule, torch.nn.Module),
            "LightningDataModule": members(pl.LightningDataModule, object),
            "Trainer": members(pl.Trainer, object, instance=pl.Trainer(**QUIET_TRAINER)),
        },
    }


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    warnings.filterwarnings("ignore")
    try:
        document = record()
    except ImportError as error:
        raise SystemExit(
            f"record_surface.py needs PyTorch Lightning in the running interpreter ({sys.executable}): {error}\n"
            "HINT: run it with the scratch venv's python (see this module's docstring), never the project's .venv"
        ) from error
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT.relative_to(REPO_ROOT)}")
