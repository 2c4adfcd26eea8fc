"""The code keeps a readable shape: modules under ~400 lines, function bodies under ~60 lines.

A function is measured from its first statement after the docstring to its end: a signature
of Lightning's forty Trainer flags, one a line, or a docstring is not code one reads through.
What is longer is listed below with the reason and a ceiling, so an exception cannot grow
unnoticed, and an entry that is no longer needed fails too (remove it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_LINES = 400
FUNCTION_BODY_LINES = 60

# path -> (ceiling, why it is longer than MODULE_LINES)
LONG_MODULES: dict[str, tuple[int, str]] = {}

# "path:qualified.name" -> (ceiling, why its body is longer than FUNCTION_BODY_LINES): none today.
LONG_FUNCTIONS: dict[str, tuple[int, str]] = {}


def _python_files() -> list[Path]:
    return sorted((ROOT / "fulmen").rglob("*.py"))


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    has_docstring = (
        isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
    )
    statements = body[1:] if has_docstring and len(body) > 1 else body
    return (node.end_lineno or node.lineno) - statements[0].lineno + 1


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, child))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _check(measured: dict[str, int], limit: int, exceptions: dict[str, tuple[int, str]], what: str) -> list[str]:
    problems = []
    for name, lines in sorted(measured.items()):
        ceiling = exceptions.get(name, (limit, ""))[0]
        if lines > ceiling:
            listed = f" (listed exception, ceiling {ceiling})" if name in exceptions else ""
            problems.append(f"{name}: {lines} lines{listed}, expected at most {limit}")
    for name in sorted(exceptions):
        if measured.get(name, 0) <= limit:
            problems.append(f"{name}: listed as a long {what} but now {measured.get(name, 0)} lines: remove the entry")
    return problems


def test_modules_stay_under_the_line_limit() -> None:
    measured = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _python_files()}
    problems = _check(measured, MODULE_LINES, LONG_MODULES, "module")
    assert not problems, (
        "Module sizes:\n  " + "\n  ".join(problems)
        + "\nHINT: split by responsibility (DESIGN.md), or list a flat table in LONG_MODULES with its reason."
    )


def test_function_bodies_stay_under_the_line_limit() -> None:
    measured = {}
    for path in _python_files():
        for name, node in _functions(ast.parse(path.read_text())):
            measured[f"{path.relative_to(ROOT)}:{name}"] = _body_lines(node)
    problems = _check(measured, FUNCTION_BODY_LINES, LONG_FUNCTIONS, "function")
    assert not problems, (
        "Function bodies:\n  " + "\n  ".join(problems)
        + "\nHINT: split it where you would say 'and', or list a flat table in LONG_FUNCTIONS with its reason."
    )


def test_body_measure_skips_signature_and_docstring() -> None:
    source = 'def f(\n    a,\n    b,\n):\n    """Doc.\n\n    More.\n    """\n    x = a\n    return x + b\n'
    (name, node), = _functions(ast.parse(source))
    assert (name, _body_lines(node)) == ("f", 2)
