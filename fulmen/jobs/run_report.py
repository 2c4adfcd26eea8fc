"""``fulmen report RUN``: one self-contained HTML page about a run, readable from disk without a server.

Sections (each an element with a fixed ``id``, so the page can be checked by parsing it):
``summary`` (state, attempts, time lost), ``curve`` (the monitored metric over wall time across
every attempt, from ``progress.jsonl``, with signals, stops, requeues and resumes marked),
``logged`` (the scalars of the run's ``metrics.csv`` and TensorBoard files against the step), ``attempts`` (a bar per
attempt and the table: wall time, queue wait before it, training time, time saves held training,
steps redone, how it ended), ``lost`` (the totals), ``checkpoints`` and ``events`` (the timeline).
Plots are inline SVG drawn by matplotlib (``fulmen[report]``); without it the tables are all there
and the page says which extra draws the plots.
"""

from __future__ import annotations

import csv
import html
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fulmen.jobs import events as run_events
from fulmen.jobs import report_plots, timeline
from fulmen.jobs.run_result import read_result
from fulmen.jobs.run_timeline import Attempt, attempts, marks

REPORT_FILE = "report.html"
_STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}th{background:#eee}
.note{color:#a60}svg{max-width:100%;height:auto}"""


def logged_metric_series(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """Each logged scalar as (step, value) points, from the ``metrics.csv`` and TensorBoard event
    files under ``run_dir`` and under the log dir its ``result.json`` names (a logger may write
    elsewhere). Every attempt's event file counts, so a resumed run gives one curve."""
    log_dir = (read_result(run_dir) or {}).get("log_dir")
    roots = [run_dir, *([Path(log_dir)] if log_dir else [])]
    series: dict[str, list[tuple[float, float]]] = {}
    for path in sorted({path.resolve() for root in roots for path in root.rglob("metrics.csv")}):
        for name, step, value in _csv_points(path):
            series.setdefault(name, []).append((step, value))
    for path in sorted({path.resolve() for root in roots for path in root.rglob("*tfevents*")}):
        for name, step, value in _tensorboard_points(path):
            series.setdefault(name, []).append((step, value))
    return {name: sorted(points) for name, points in series.items()}


def _csv_points(path: Path) -> Iterator[tuple[str, float, float]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return
    for row in rows:
        step = _float(row.get("step"))
        for name, text in row.items():
            value = _float(text)
            if name not in ("step", "epoch") and step is not None and value is not None:
                yield name, step, value


def _tensorboard_points(path: Path) -> Iterator[tuple[str, float, float]]:
    """The scalars of one tfevents file (simple values and the scalar tensors of the scalars plugin)."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        return
    try:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                if value.tag == "epoch" or kind not in ("simple_value", "tensor"):
                    continue
                if kind == "simple_value":
                    number = _float(value.simple_value)
                else:
                    array = tensor_util.make_ndarray(value.tensor)
                    number = _float(array.reshape(-1)[0]) if array.size == 1 else None
                if number is not None:
                    yield value.tag, float(event.step), number
    except Exception:  # noqa: BLE001  (a truncated or foreign event file: its scalars are skipped, the page still renders)
        return


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def render_report(run_dir: Path, title: str, *, plots: bool | None = None, now: float | None = None) -> str:
    """The page for ``run_dir`` as HTML text (``plots``: draw them; default: when matplotlib is there)."""
    now = time.time() if now is None else now
    logged = run_events.read_events(run_dir)
    history = run_events.read_progress_history(run_dir)
    summary = timeline.summarize(logged, run_events.read_progress(run_dir))
    runs = attempts(logged)
    series = logged_metric_series(run_dir)
    draw = report_plots.available() if plots is None else plots
    origin = min([float(e.get("time", now)) for e in logged] + [float(p["time"]) for p in history if "time" in p]
                 or [now])
    marked = marks(logged)
    note = (f'<p class="note">Plots need matplotlib: {report_plots.REPORT_EXTRA_HINT}</p>' if not draw else "")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p>run dir {_e(str(run_dir))}; report written {_e(_clock(now))}</p>", note,
             _section("summary", "Summary", _summary_table(summary, read_result(run_dir), len(runs)))]
    curve = "<p>No progress recorded (rank 0 writes progress.jsonl every few seconds of training).</p>"
    if history and draw:
        curve = _figure("curve-plot", report_plots.curve_svg(history, marked, origin, [a.start for a in runs]))
    parts.append(_section("curve", "Training curve across attempts", curve))
    if series:
        body = _figure("logged-plot", report_plots.logged_metrics_svg(series)) if draw else ""
        parts.append(_section("logged", "Logged metrics", body + _table(
            ["metric", "points", "last step", "last value"],
            [[name, len(points), f"{points[-1][0]:g}", f"{points[-1][1]:.6g}"] for name, points in sorted(series.items())])))
    bars = _figure("attempts-plot", report_plots.attempts_svg(runs, marked, origin, now)) if runs and draw else ""
    parts.append(_section("attempts", "Attempts", bars + _attempts_table(runs)))
    parts.append(_section("lost", "Time lost to preemption and restarts", _lost_table(summary, runs)))
    parts.append(_section("checkpoints", "Checkpoints", _checkpoints_table(logged)))
    parts.append(_section("events", "Events", _table(
        ["time", "host", "event"], [[_clock(float(e.get("time", 0))), e.get("host", "?"), timeline.describe_event(e)]
                                    for e in logged])))
    return "\n".join(parts) + "\n</body></html>\n"


def write_report(run_dir: Path, output: Path | None = None, *, title: str | None = None) -> Path:
    """Write the page (default ``<run_dir>/report.html``) and return its path."""
    path = output or run_dir / REPORT_FILE
    path.write_text(render_report(run_dir, title or f"run {run_dir.name}"), encoding="utf-8")
    return path


def _summary_table(summary: timeline.RunSummary, result: dict[str, Any] | None, count: int) -> str:
    ending = summary.outcome
    rows = [["attempts", count], ["preemptions", summary.preemptions],
            ["final state", (result or {}).get("state") or (ending.get("event") if ending else "running or unknown")],
            ["step", "-" if summary.step is None else timeline.progress_bar(int(summary.step), summary.total)],
            ["time lost", timeline.duration(summary.lost_s)], ["steps redone after resumes", summary.steps_redone]]
    if summary.metric and summary.metric_value is not None:
        rows.append([f"last {summary.metric}", f"{summary.metric_value:.6g}"])
    return _table(["", ""], rows)


def _attempts_table(runs: list[Attempt]) -> str:
    rows = [[a.number, _clock(a.start), _clock(a.end) if a.end else "running", _span(a.wall_s), _span(a.wait_s),
             _span(a.training_s), f"{a.saving_s:.2f}s in {a.checkpoints}",
             "-" if a.resumed_from is None else f"{a.steps_redone} (from step {a.resumed_from})",
             timeline.describe_event(a.ending) if a.ending else "-"] for a in runs]
    return _table(["attempt", "started", "ended", "wall time", "queue wait before", "training", "saving",
                   "steps redone", "end"], rows)


def _lost_table(summary: timeline.RunSummary, runs: list[Attempt]) -> str:
    waits = sum(a.wait_s or 0.0 for a in runs)
    redone_s = summary.lost_s - summary.gaps_s
    return _table(["", ""], [["queue waits between attempts", _span(waits)],
                             ["work redone after resumes", f"{summary.steps_redone} steps ({_span(redone_s)})"],
                             ["time spent saving checkpoints", _span(sum(a.saving_s for a in runs))],
                             ["work lost in all", _span(summary.lost_s)]])


def _checkpoints_table(logged: list[dict[str, Any]]) -> str:
    saves = [e for e in logged if e.get("event") == "checkpoint"]
    return _table(["time", "step", "held training", "kind", "path", "on disk"], [
        [_clock(float(e.get("time", 0))), e.get("step"), f"{float(e.get('held_s', 0) or 0):.3f}s", e.get("kind", "-"),
         e.get("path"), "yes" if e.get("path") and Path(str(e["path"])).exists() else "no"] for e in saves])


def _section(section_id: str, heading: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(heading)}</h2>\n{body}\n</section>'


def _figure(figure_id: str, svg: str) -> str:
    return f'<figure id="{figure_id}">{svg}</figure>'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _span(seconds: float | None) -> str:
    return "-" if seconds is None else f"{timeline.duration(seconds)} ({seconds:.1f}s)"
