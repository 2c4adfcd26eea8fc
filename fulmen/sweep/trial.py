"""What a trial's script sees: its values as arguments and as JSON in the environment.

The launcher appends ``--lr 0.1 --hidden 8`` to the script's arguments (removing the same
options given by hand, so the sweep wins whatever parser the script uses) and sets
``FULMEN_SWEEP_TRIAL`` to ``{"sweep_dir": ..., "index": 3, "values": {"lr": 0.1, ...}}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fulmen.sweep.space import Trial

TRIAL_VARIABLE = "FULMEN_SWEEP_TRIAL"


def current_trial(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """This process's trial values (``{"lr": 0.1, "hidden": 8}``), or None outside a sweep.

    For scripts that prefer not to declare every swept option in argparse.
    """
    info = trial_info(environ)
    return None if info is None else dict(info["values"])


def trial_info(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The whole trial record: ``index``, ``values`` and ``sweep_dir``; None outside a sweep."""
    text = (os.environ if environ is None else environ).get(TRIAL_VARIABLE)
    return None if not text else dict(json.loads(text))


def trial_environment(trial: Trial, sweep_dir: str) -> str:
    """The JSON the launcher puts in ``FULMEN_SWEEP_TRIAL`` for ``trial``."""
    return json.dumps({"sweep_dir": sweep_dir, "index": trial.index, "values": trial.values})


def merge_script_args(args: Sequence[str], trial: Trial) -> list[str]:
    """``args`` without the trial's options (``--lr X`` / ``--lr=X``), then the trial's own.

    A value after a bare ``--lr`` is dropped unless it is itself an option (``--lr --flag``);
    negative numbers (``--lr -1``) count as values.
    """
    flags = {f"--{name}" for name, _ in trial.texts}
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            if not arg.startswith("--"):
                continue
        if arg in flags:
            skip_value = True
            continue
        if arg.split("=", 1)[0] in flags and "=" in arg:
            continue
        kept.append(arg)
    return [*kept, *trial.script_args()]
