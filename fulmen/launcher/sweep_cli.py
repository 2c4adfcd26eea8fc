"""The sweep options of ``launch`` and ``fulmen sweep results``.

``launch --sweep lr=0.1,0.01 --sweep hidden=8,16 --parallel 2 train.py`` (see
``fulmen.sweep.space`` for the value syntax and ``fulmen.launcher.sweep_run`` for the run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from fulmen.errors import LaunchError
from fulmen.jobs.records import write_private
from fulmen.jobs.run_result import read_result
from fulmen.launcher.sweep_run import (
    COMPLETED,
    FAILED,
    SWEEP_FILE,
    TRIAL_FILE,
    read_sweep,
    read_trial_state,
    trial_dir,
    trial_state,
)
from fulmen.sweep.space import MODES, Parameter, SweepSpace, parse_sweep_option, space_from_file_data


def add_sweep_options(group: argparse._ArgumentGroup) -> None:
    """``--sweep``, ``--sweep-file``, ``--sweep-mode``, ``--trials``, ``--sweep-seed``, ``--parallel``."""
    group.add_argument("--sweep", action="append", default=[], metavar="NAME=VALUES",
                       help="sweep --NAME over VALUES: 0.1,0.01 | 'range(LOW, HIGH, N)' | 'log_range(LOW, HIGH, N)' "
                            "(repeat for more parameters)")
    group.add_argument("--sweep-file", metavar="YAML", help="the sweep as YAML: parameters, mode, trials, seed")
    group.add_argument("--sweep-mode", choices=MODES, help="every combination (grid, default) or random draws")
    group.add_argument("--trials", type=int, metavar="N", help="grid: the first N combinations; random: N draws")
    group.add_argument("--sweep-seed", type=int, metavar="S", help="seed of the random draws (default: chosen, kept)")
    group.add_argument("--parallel", type=int, metavar="K", help="trials running at a time (default: 1)")
    group.add_argument("--gpus-per-trial", type=int, metavar="G",
                       help="local: split --gpus between concurrent trials, G each (CUDA_VISIBLE_DEVICES per trial)")


def space_from_args(ns: argparse.Namespace) -> SweepSpace | None:
    """The sweep the options describe, or None when none was asked for (a plain launch)."""
    given = [flag for flag, value in (("--sweep-mode", ns.sweep_mode), ("--trials", ns.trials),
                                      ("--sweep-seed", ns.sweep_seed), ("--parallel", ns.parallel),
                                      ("--gpus-per-trial", ns.gpus_per_trial)) if value is not None]
    if not ns.sweep and not ns.sweep_file:
        if given:
            raise LaunchError(f"{', '.join(given)}: only for a sweep, but no --sweep or --sweep-file was given.\n"
                              "HINT: --sweep lr=0.1,0.01")
        return None
    if ns.parallel is not None and ns.parallel < 1:
        raise LaunchError(f"--parallel must be >= 1 (trials at a time), got {ns.parallel}.\nHINT: --parallel 2")
    from_file = _read_sweep_file(ns.sweep_file) if ns.sweep_file else None
    parameters: tuple[Parameter, ...] = (from_file.parameters if from_file else ()) + tuple(
        parse_sweep_option(item) for item in ns.sweep
    )
    return SweepSpace(
        parameters,
        mode=ns.sweep_mode or (from_file.mode if from_file else "grid"),
        trials=ns.trials if ns.trials is not None else (from_file.trials if from_file else None),
        seed=ns.sweep_seed if ns.sweep_seed is not None else (from_file.seed if from_file else None),
    )


def _read_sweep_file(path: str) -> SweepSpace:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise LaunchError(f"--sweep-file {path}: cannot read it ({exc.strerror}).") from None
    except yaml.YAMLError as exc:
        raise LaunchError(f"--sweep-file {path} is not valid YAML: {exc}") from None
    return space_from_file_data(data, path)


# ---- fulmen sweep results ------------------------------------------------------------
def latest_sweep(run_root: Path) -> Path:
    """The newest sweep dir under ``run_root`` (by its ``sweep.json``), for commands given none."""
    found = sorted(run_root.glob(f"*/{SWEEP_FILE}"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise LaunchError(f"No sweep under {run_root.resolve()} (no */{SWEEP_FILE}).\n"
                          "HINT: give the sweep dir: fulmen sweep results fulmen_runs/<name>-sweep-<id>")
    return found[-1].parent


def trial_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per trial: index, values, state, exit code, and its ``result.json`` facts."""
    sweep = read_sweep(sweep_dir)
    if sweep is None:
        raise LaunchError(f"{sweep_dir} is not a sweep dir (no {SWEEP_FILE}).\n"
                          "HINT: fulmen sweep results fulmen_runs/<name>-sweep-<id>")
    rows = []
    for trial in sweep["trials"]:
        live = trial_state(sweep_dir, trial["index"])  # asks SLURM for an element not over yet
        state = read_trial_state(sweep_dir, trial["index"]) or {}
        result = read_result(trial_dir(sweep_dir, trial["index"])) or {}
        rows.append({
            "trial": trial["index"],
            "values": trial["values"],
            "state": live,
            "job_id": state.get("job_id"),
            "exit_code": state.get("exit_code"),
            "run_dir": str(trial_dir(sweep_dir, trial["index"])),
            "global_step": result.get("global_step"),
            "metrics": result.get("metrics", {}),
            "checkpoint": result.get("checkpoint"),
        })  # fmt: skip
    return rows


def sort_rows(rows: list[dict[str, Any]], metric: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Rows ranked by ``metric`` (default: the ModelCheckpoint monitor), best first; missing last.

    The direction is the checkpoint's ``mode`` when the metric is its monitor, else ascending.
    """
    checkpoints = [row["checkpoint"] for row in rows if row["checkpoint"] and row["checkpoint"].get("monitor")]
    metric = metric or (checkpoints[0]["monitor"] if checkpoints else None)
    if metric is None:
        return rows, None
    descending = any(c["monitor"] == metric and c.get("mode") == "max" for c in checkpoints)

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row["metrics"].get(metric)
        if value is None or not math.isfinite(value):
            return (1, 0.0)
        return (0, -value if descending else value)

    return sorted(rows, key=key), metric


def find_sweep(sweep: str | None, run_root: str = "fulmen_runs") -> Path:
    """The sweep dir given, or the latest under ``run_root`` (said on stderr, so it is never a guess)."""
    if sweep:
        return Path(sweep).resolve()
    found = latest_sweep(Path(run_root)).resolve()
    print(f"fulmen: the latest sweep here: {found}", file=sys.stderr)
    return found


def results(sweep: str | None, *, sort: str | None = None, as_json: bool = False, run_root: str = "fulmen_runs") -> int:
    """``fulmen sweep results [SWEEP] [--sort METRIC] [--json]``: the trials, ranked."""
    sweep_dir = find_sweep(sweep, run_root)
    rows, metric = sort_rows(trial_rows(sweep_dir), sort)
    if as_json:
        print(json.dumps({"sweep_dir": str(sweep_dir), "sort": metric, "trials": rows}, indent=2))
        return 0
    print(f"sweep {sweep_dir}" + (f" (ranked by {metric})" if metric else ""))
    names = list(rows[0]["values"]) if rows else []
    header = ["trial", *names, "state", "step", *([metric] if metric else []), "job"]
    table = [header] + [
        [str(row["trial"]), *(str(row["values"][n]) for n in names), row["state"], _text(row["global_step"]),
         *([_text(row["metrics"].get(metric))] if metric else []), row["job_id"] or "-"]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def cancel(sweep: str | None, *, trial: int | None = None, run_root: str = "fulmen_runs") -> int:
    """``fulmen sweep cancel [SWEEP] [--trial N]``: cancel every trial not over yet, or trial N."""
    from fulmen.jobs.records import read_record
    from fulmen.launcher.backends import backend_for

    sweep_dir = find_sweep(sweep, run_root)
    rows = trial_rows(sweep_dir)
    if trial is not None:
        rows = [row for row in rows if row["trial"] == trial]
        if not rows:
            raise LaunchError(f"{sweep_dir} has no trial {trial}.\nHINT: `fulmen status {sweep_dir}` lists them.")
    live = [row for row in rows if row["job_id"] and row["state"] not in (COMPLETED, FAILED)]
    for row in live:
        record = read_record(Path(row["run_dir"]))
        backend_for(record.backend).cancel(record)
        # said here, not left to sacct: an array element cancelled while pending has no
        # accounting row of its own, and squeue forgets it at once
        state = {**(read_trial_state(sweep_dir, row["trial"]) or {}), "state": FAILED, "slurm_state": "CANCELLED"}
        write_private(Path(row["run_dir"]) / TRIAL_FILE, json.dumps(state, indent=2) + "\n")
        print(f"fulmen: cancelled trial {row['trial']} (job {row['job_id']})")
    if not live:
        print(f"fulmen: nothing to cancel in {sweep_dir}: no trial is queued or running")
    return 0
