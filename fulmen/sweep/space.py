"""A sweep's search space and its trials: parsing and generation, pure (no I/O, no randomness
outside the seeded generator).

A parameter is a name and a finite list of values, written as on the command line::

    lr=0.1,0.01                  a list (each value kept as written, typed for the JSON)
    hidden=range(8, 32, 4)       4 evenly spaced values from 8 to 32, both included (ints stay ints)
    wd=log_range(1e-5, 1e-2, 4)  4 values spaced evenly on a log scale

or as a ``--sweep-file`` (YAML)::

    mode: random        # grid (default) | random
    trials: 8           # grid: the first N combinations; random: N draws (required)
    seed: 0
    parameters:
      lr: [0.1, 0.01]
      hidden: range(8, 32, 4)

``grid`` is every combination, the first parameter varying slowest. ``random`` draws distinct
combinations from ``random.Random(seed)`` exactly as test_tube's ``random_search`` does
(``random_trials``), so the same seed gives the same trials on every machine, and test_tube's.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fulmen.errors import LaunchError

MODES = ("grid", "random")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_RANGE = re.compile(r"^(log_range|range)\((.*)\)$")
Value = int | float | str | bool


@dataclass(frozen=True)
class Parameter:
    """One swept option: its name (the script sees ``--name``) and its values, in order.

    ``texts`` are the values as the script receives them (``1e-3`` stays ``1e-3``); ``values``
    are the same, typed, as ``current_trial()`` returns them.
    """

    name: str
    texts: tuple[str, ...]

    @property
    def values(self) -> tuple[Value, ...]:
        return tuple(typed_value(text) for text in self.texts)


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: its index (``trial_0003``) and one value per parameter."""

    index: int
    texts: tuple[tuple[str, str], ...]  # (name, value as the script receives it)

    @property
    def values(self) -> dict[str, Value]:
        """name -> typed value (what ``fulmen.sweep.current_trial()`` returns)."""
        return {name: typed_value(text) for name, text in self.texts}

    def script_args(self) -> list[str]:
        """``["--lr", "0.1", "--hidden", "8"]``: appended to the script's arguments."""
        return [item for name, text in self.texts for item in (f"--{name}", text)]

    def label(self) -> str:
        """``lr=0.1 hidden=8``: how the console names the trial."""
        return " ".join(f"{name}={text}" for name, text in self.texts)


@dataclass(frozen=True)
class SweepSpace:
    """What ``--sweep`` / ``--sweep-file`` / ``--sweep-mode`` / ``--trials`` / ``--sweep-seed`` say."""

    parameters: tuple[Parameter, ...]
    mode: str = "grid"
    trials: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.parameters:
            raise LaunchError("A sweep needs at least one parameter.\nHINT: --sweep lr=0.1,0.01")
        names = [parameter.name for parameter in self.parameters]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise LaunchError(
                f"The sweep names {', '.join(twice)} more than once (--sweep and --sweep-file together count).\n"
                "HINT: give each parameter once, with all its values: --sweep lr=0.1,0.01"
            )
        if self.mode not in MODES:
            raise LaunchError(f"--sweep-mode {self.mode!r} is not one of {', '.join(MODES)}.")
        if self.trials is not None and self.trials < 1:
            raise LaunchError(f"--trials must be >= 1, got {self.trials}.")
        if self.mode == "random" and self.trials is None:
            raise LaunchError(
                "--sweep-mode random draws a number of trials, but none was given.\nHINT: add --trials 8"
            )

    def generate(self) -> list[Trial]:
        """The trials, in index order (see the module docstring for grid and random)."""
        names = [parameter.name for parameter in self.parameters]
        if self.mode == "grid":
            combos = itertools.product(*(parameter.texts for parameter in self.parameters))
            chosen = list(itertools.islice(combos, self.trials))
        else:
            lists = [list(parameter.texts) for parameter in self.parameters]
            chosen = [tuple(combo) for combo in random_trials(lists, self.trials or 0, random.Random(self.seed))]
        return [Trial(index, tuple(zip(names, combo))) for index, combo in enumerate(chosen)]

    def to_dict(self) -> dict[str, Any]:
        """The space as JSON data (``sweep.json``); ``from_dict`` reads it back."""
        return {
            "mode": self.mode,
            "trials": self.trials,
            "seed": self.seed,
            # a list, not a mapping: the order decides the grid's order (trial indices)
            "parameters": [{"name": parameter.name, "values": list(parameter.texts)} for parameter in self.parameters],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpace:
        parameters = tuple(Parameter(item["name"], tuple(item["values"])) for item in data["parameters"])
        return cls(parameters, data.get("mode", "grid"), data.get("trials"), data.get("seed"))


def random_trials(lists: list[list[Any]], count: int, rng: random.Random | Any) -> list[list[Any]]:
    """``count`` distinct random combinations (fewer when the space has fewer): test_tube's
    ``random_search``, draw for draw (each list shuffled in place, then one ``rng.sample`` per
    parameter until enough distinct combinations), so the same seed gives test_tube's trials.
    ``rng`` is a ``random.Random`` or the ``random`` module itself (test_tube's global state)."""
    possible = math.prod(len(values) for values in lists)
    for values in lists:
        rng.shuffle(values)
    seen: set[str] = set()
    chosen: list[list[Any]] = []
    while len(chosen) < min(possible, count):
        combo = [rng.sample(values, 1)[0] for values in lists]
        key = json.dumps(combo, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(combo)
    return chosen


def parse_sweep_option(text: str) -> Parameter:
    """``--sweep NAME=VALUES`` -> Parameter (VALUES: ``a,b,c``, ``range(...)`` or ``log_range(...)``)."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise LaunchError(
            f"--sweep {text!r} is not NAME=VALUES.\n"
            "HINT: --sweep lr=0.1,0.01 or --sweep hidden='range(8, 32, 4)'"
        )
    return parameter_from_value(name, values.strip())


def parameter_from_value(name: str, value: Any) -> Parameter:
    """A parameter from a command-line string or a YAML value (a list, a scalar, or a range string)."""
    if not _NAME.match(name) or name.startswith("-"):
        raise LaunchError(
            f"Sweep parameter name {name!r} is not an option name (letters, digits, _ . -, not starting "
            "with a digit or dash); the script receives it as --NAME.\nHINT: --sweep lr=0.1,0.01"
        )
    if isinstance(value, str) and (match := _RANGE.match(value.strip())):
        texts = _range_texts(name, match.group(1), match.group(2))
    elif isinstance(value, str):
        texts = tuple(part.strip() for part in value.split(","))
    elif isinstance(value, Sequence):
        texts = tuple(_yaml_text(item) for item in value)
    else:
        texts = (_yaml_text(value),)
    if not texts or any(text == "" for text in texts):
        raise LaunchError(
            f"Sweep parameter {name!r} has an empty value in {value!r}.\n"
            f"HINT: list the values separated by commas: --sweep {name}=0.1,0.01"
        )
    return Parameter(name, texts)


def _range_texts(name: str, kind: str, arguments: str) -> tuple[str, ...]:
    example = f"{name}={kind}(1e-4, 1e-1, 4)" if kind == "log_range" else f"{name}=range(8, 32, 4)"
    parts = [part.strip() for part in arguments.split(",")]
    try:
        low, high, count_text = parts
        low_value, high_value, count = float(low), float(high), int(count_text)
    except ValueError:
        raise LaunchError(
            f"Sweep parameter {name!r}: {kind}({arguments}) is not {kind}(LOW, HIGH, COUNT) with numbers "
            f"and a whole COUNT.\nHINT: {example}"
        ) from None
    if count < 1 or (kind == "log_range" and (low_value <= 0 or high_value <= 0)):
        raise LaunchError(
            f"Sweep parameter {name!r}: {kind}({arguments}) needs COUNT >= 1"
            + (" and LOW, HIGH > 0 (a log scale)" if kind == "log_range" else "") + f".\nHINT: {example}"
        )
    if kind == "log_range":
        low_value, high_value = math.log10(low_value), math.log10(high_value)
    step = (high_value - low_value) / (count - 1) if count > 1 else 0.0
    points = [low_value + step * i for i in range(count)]
    if kind == "log_range":
        return tuple(_number_text(10**point) for point in points)
    whole = all(text.lstrip("+-").isdigit() for text in (low, high)) and all(float(p).is_integer() for p in points)
    return tuple(str(int(point)) if whole else _number_text(point) for point in points)


def _number_text(number: float) -> str:
    """A float as short as it can be written without losing what matters (12 significant digits)."""
    return f"{number:.12g}"


def _yaml_text(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float, str)):
        return str(item)
    raise LaunchError(
        f"Sweep value {item!r} ({type(item).__name__}) is not a number or a string.\n"
        "HINT: each value must be something a command line can hold, e.g. [0.1, 0.01]"
    )


def typed_value(text: str) -> Value:
    """``"8"`` -> 8, ``"0.1"`` -> 0.1, ``"true"`` -> True, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def space_from_file_data(data: Any, source: str) -> SweepSpace:
    """A ``--sweep-file``'s parsed YAML -> SweepSpace (see the module docstring for the keys)."""
    known = {"mode", "trials", "seed", "parameters"}
    if not isinstance(data, Mapping) or not isinstance(data.get("parameters"), Mapping):
        raise LaunchError(
            f"--sweep-file {source}: expected a mapping with a 'parameters' mapping, got {json.dumps(data)[:120]}.\n"
            "HINT: parameters:\\n  lr: [0.1, 0.01]\\n  hidden: range(8, 32, 4)"
        )
    unknown = sorted(set(data) - known)
    if unknown:
        raise LaunchError(f"--sweep-file {source}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}.")
    parameters = tuple(parameter_from_value(str(name), value) for name, value in data["parameters"].items())
    return SweepSpace(parameters, data.get("mode", "grid"), data.get("trials"), data.get("seed"))
