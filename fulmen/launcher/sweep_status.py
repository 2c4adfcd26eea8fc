"""``fulmen status SWEEP``: one row per trial (values, state, a step bar, the monitored metric, requeues).

A sweep is named by its folder (``fulmen_runs/<name>-sweep-<id>`` or just its name), or on SLURM
by its array id (the records of its elements are ``<array>_<i>``). Each row is assembled from the
trial's ``trial.json`` and ``result.json`` (``sweep_cli.trial_rows``) and, while it trains, its
``progress.json`` and event log (``fulmen.jobs.timeline``), so a running trial shows its step and
metric before it has a result.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from fulmen.jobs import events as run_events
from fulmen.jobs import timeline
from fulmen.jobs.records import all_records
from fulmen.launcher.status_watch import Screen, watch_screen
from fulmen.launcher.sweep_cli import trial_rows
from fulmen.launcher.sweep_run import COMPLETED, FAILED, SWEEP_FILE

STEP_BAR_WIDTH = 10
_OVER = (COMPLETED, FAILED)


def find_sweep_dir(job: str, run_root: str = "fulmen_runs") -> Path | None:
    """The sweep dir ``job`` names (a path, a folder name under ``run_root``, or a SLURM array id), or None.

    None also when ``job`` is a job id of its own: a recorded job always wins over an array of that id.
    """
    for candidate in (Path(job), Path(run_root) / job):
        if (candidate / SWEEP_FILE).is_file():
            return candidate.resolve()
    records = all_records()
    if any(record.job_id == job for record in records):
        return None
    for record in reversed(records):  # the newest first: a run name may have been reused
        parent = Path(record.run_dir).parent
        if (record.job_id.startswith(f"{job}_") or parent.name == job) and (parent / SWEEP_FILE).is_file():
            return parent
    return None


def trial_progress_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """``sweep_cli.trial_rows`` plus each trial's live facts: step, total, metric, best value, requeues.

    ``best`` is ModelCheckpoint's best score once the trial has a result, else the latest value of
    the monitored metric in its progress file; ``requeues`` counts the attempts after the first.
    """
    rows = trial_rows(sweep_dir)
    for row in rows:
        run = Path(row["run_dir"])
        summary = timeline.summarize(run_events.read_events(run), run_events.read_progress(run))
        checkpoint = row["checkpoint"] or {}
        metric = checkpoint.get("monitor") or summary.metric
        best = checkpoint.get("best_model_score")
        if best is None and metric is not None:
            best = row["metrics"].get(metric, summary.metric_value if summary.metric == metric else None)
        total = summary.total
        row.update(
            step=row["global_step"] if row["global_step"] is not None else summary.step,
            total=int(total) if isinstance(total, (int, float)) and total == total and total != float("inf") else None,
            metric=metric,
            best=best,
            requeues=max(0, summary.attempts - 1),
        )
    return rows


def sweep_screen(sweep_dir: Path) -> Screen:
    """What ``fulmen status SWEEP`` prints, the one-line digest ``--watch`` compares, and whether
    any trial may still run."""
    rows = trial_progress_rows(sweep_dir)
    counts = Counter(row["state"] for row in rows)
    tally = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    lines = [f"sweep {sweep_dir} ({len(rows)} trials: {tally})"]
    names = list(rows[0]["values"]) if rows else []
    metric = next((row["metric"] for row in rows if row["metric"]), None)
    header = ["trial", *names, "state", "step", metric or "metric", "requeues", "job"]
    table = [header] + [_cells(row, names) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    steps = sum(int(row["step"] or 0) for row in rows)
    digest = f"trials: {tally}; steps {steps}; requeues {sum(row['requeues'] for row in rows)}"
    return Screen(lines, digest, live=any(row["state"] not in _OVER for row in rows))


def _cells(row: dict[str, Any], names: list[str]) -> list[str]:
    step = "-" if row["step"] is None else timeline.progress_bar(int(row["step"]), row["total"], STEP_BAR_WIDTH)
    best = row["best"]
    return [str(row["trial"]), *(str(row["values"].get(name)) for name in names), str(row["state"]),
            step.replace(" (total unknown)", ""), "-" if best is None else f"{best:.4g}", str(row["requeues"]),
            row["job_id"] or "-"]


def sweep_status(sweep_dir: Path, *, as_json: bool = False, watch: float | None = None) -> int:
    """``fulmen status SWEEP [--json] [--watch S]``: the trial table (JSON: the rows)."""
    if as_json:
        print(json.dumps({"sweep_dir": str(sweep_dir), "trials": trial_progress_rows(sweep_dir)}, indent=2,
                         default=str))
        return 0
    if watch is not None:
        return watch_screen(lambda: sweep_screen(sweep_dir), watch)
    print("\n".join(sweep_screen(sweep_dir).lines), flush=True)
    return 0
