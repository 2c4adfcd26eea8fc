"""Hook and helper signatures name what they receive: ``trainer: Trainer``, ``pl_module: LightningModule``.

The names come from ``if TYPE_CHECKING:`` imports (no import circle at run time); these tests
check that none is typed ``Any`` again and that every annotation resolves with those imports.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fulmen"
TYPED_PARAMETERS = {"trainer": "Trainer", "pl_module": "LightningModule"}


def _module_names(*subpackages: str) -> list[str]:
    names = []
    for sub in subpackages:
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_no_trainer_or_pl_module_parameter_is_typed_any() -> None:
    untyped = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                if arg.arg in TYPED_PARAMETERS and arg.annotation is not None and ast.unparse(arg.annotation) == "Any":
                    untyped.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}({arg.arg}: Any)")
    assert not untyped, (
        "Parameters typed Any where the type is known:\n  " + "\n  ".join(untyped)
        + "\nHINT: type them Trainer / LightningModule, imported under `if TYPE_CHECKING:`."
    )


@pytest.mark.parametrize("name", _module_names("core", "callbacks", "loggers"))
def test_annotations_resolve_with_the_type_checking_imports(name: str) -> None:
    module = importlib.import_module(name)
    namespace = dict(vars(module))
    for node in ast.parse(Path(module.__file__).read_text()).body:  # type: ignore[arg-type]
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            exec(compile(ast.Module(node.body, []), module.__file__, "exec"), namespace)  # type: ignore[arg-type]
    functions = []
    for obj in vars(module).values():
        members = list(vars(obj).values()) if inspect.isclass(obj) and obj.__module__ == name else []
        for candidate in [obj, *members]:
            candidate = candidate.fget if isinstance(candidate, property) else getattr(candidate, "__func__", candidate)
            if inspect.isfunction(candidate) and candidate.__module__ == name:
                functions.append(candidate)
    for function in functions:
        typing.get_type_hints(function, globalns=namespace)  # raises NameError for a name no import provides
