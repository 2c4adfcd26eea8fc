"""Turn what a scenario observed into stable, JSON-ready data (no tensors, paths, timestamps)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

FLOAT_DIGITS = 6
_EVENTS_FILE = re.compile(r"events\.out\.tfevents\.[^/]+$")


def plain(value: Any) -> Any:
    """Tensors -> numbers/lists, floats rounded, non-finite floats as strings, tuples as lists."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)  # "nan", "inf": JSON has no spelling for them
        return round(value, FLOAT_DIGITS)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def metrics(values: dict[str, Any]) -> dict[str, Any]:
    """A metrics dict (callback_metrics, logged_metrics, ...) as sorted plain data."""
    return {key: plain(values[key]) for key in sorted(values)}


def relative(path: Any, root: Path) -> str | None:
    """``path`` relative to the scenario's root, with '/' separators; None stays None. Symbolic
    links are not followed (a link is named as itself), unless only the resolved path is under root."""
    if path is None or path == "":
        return None if path is None else ""
    path = Path(path)
    for candidate, base in ((path.absolute(), root.absolute()), (path.resolve(), root.resolve())):
        try:
            return candidate.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def tree(root: Path, under: Path | None = None) -> list[str]:
    """Every file below ``under`` (default: root), relative to root; tfevents names generalised
    (they hold a timestamp, the host name and the pid); a symbolic link as ``name -> target``."""
    base = under or root
    files = []
    for path in sorted(base.rglob("*")):
        if path.is_symlink():
            files.append(f"{relative(path, root)} -> {Path(os.readlink(path)).name}")
        elif path.is_file():
            files.append(_EVENTS_FILE.sub("events.out.tfevents.*", relative(path, root)))
    return sorted(files)


def error_or(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or ``{"raised": [...]}``: the built-in exception classes its error
    can be caught as (the libraries' own exception classes cannot be shared by one script)."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - what the error can be caught as is observed
        skip = (BaseException, Exception, object)
        builtins = [c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins" and c not in skip]
        return {"raised": sorted(builtins)}


# Observations are compared with Lightning's across machines: float32 kernels sum in a different
# order on another CPU (AVX2 vs AVX-512 builds of the same torch wheel), which moves the sixth
# digit of a loss after a few dozen steps. Two units in the last rounded digit, or 1e-5 of the
# value, is far below any behavioural difference (a skipped step, a wrong lr, a missed clip).
FLOAT_ABS_TOL = 2 * 10.0**-FLOAT_DIGITS
FLOAT_REL_TOL = 1e-5


def agree(expected: Any, observed: Any) -> bool:
    """``expected == observed`` for JSON-ready data, but floats only need to be close (see
    FLOAT_REL_TOL); every other value, structure and key must be identical."""
    if isinstance(expected, float) or isinstance(observed, float):
        numbers = (int, float)
        if isinstance(expected, bool) or isinstance(observed, bool):
            return False  # one side is a float, the other a bool
        if not (isinstance(expected, numbers) and isinstance(observed, numbers)):
            return False
        return math.isclose(expected, observed, rel_tol=FLOAT_REL_TOL, abs_tol=FLOAT_ABS_TOL)
    if isinstance(expected, dict) and isinstance(observed, dict):
        return expected.keys() == observed.keys() and all(agree(expected[k], observed[k]) for k in expected)
    if isinstance(expected, list) and isinstance(observed, list):
        return len(expected) == len(observed) and all(agree(e, o) for e, o in zip(expected, observed))
    return expected == observed
