"""The figures of ``fulmen report``, drawn with matplotlib (the ``fulmen[report]`` extra) as inline SVG.

Each function returns the ``<svg>`` element as text, ready to sit inside the HTML page, so the
page stays one self-contained file. matplotlib is imported on the first call: ``available()``
says whether it is installed, and the page says which extra draws the plots when it is not.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Sequence
from typing import Any

from fulmen.jobs.run_timeline import Attempt

REPORT_EXTRA_HINT = "pip install 'fulmen[report]'"
_MARK_COLORS = {"signal": "tab:orange", "stopped": "tab:red", "failed": "black", "requeued": "tab:purple",
                "restarted": "tab:purple", "resumed": "tab:green"}


def available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(height: float = 3.2) -> Any:
    from matplotlib.figure import Figure  # pyplot is never needed: no GUI backend, no global state

    return Figure(figsize=(9, height), layout="constrained")


def _svg(figure: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as <text>: smaller, searchable, checkable
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML


def _mark(ax: Any, marks: list[tuple[float, str]], origin: float, labels: bool = True) -> None:
    seen: set[tuple[int, str]] = set()
    for when, label in marks:
        kind = label.split()[0]
        key = (round(when), kind)
        if key in seen:  # a signal event per rank: one line per moment is enough
            continue
        seen.add(key)
        ax.axvline(when - origin, color=_MARK_COLORS.get(kind, "gray"), linestyle="--", linewidth=1)
        if labels:
            ax.annotate(label, (when - origin, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        va="top", ha="right", color=_MARK_COLORS.get(kind, "gray"))


def curve_svg(history: list[dict[str, Any]], marks: list[tuple[float, str]], origin: float,
              starts: Sequence[float] = ()) -> str:
    """The monitored metric (or, without one, the step) over wall time across all attempts, with
    each signal, stop, requeue and resume marked; the line breaks where an attempt starts."""
    figure = _figure()
    ax = figure.add_subplot()
    metric = next((p.get("metric") for p in history if p.get("metric") and p.get("metric_value") is not None), None)
    points = [p for p in history if metric is None or (p.get("metric") == metric and p.get("metric_value") is not None)]
    xs: list[float] = []
    ys: list[float] = []
    for point in points:
        when = float(point["time"])
        if xs and any(xs[-1] + origin < start <= when for start in starts):
            xs.append(math.nan)  # no line across the gap between two attempts
            ys.append(math.nan)
        xs.append(when)
        ys.append(point["metric_value"] if metric else point["step"])
    ax.plot([x - origin for x in xs], ys, marker=".", label=metric or "step")
    ax.set_xlabel("seconds since the run was submitted")
    ax.set_ylabel(metric or "global step")
    _mark(ax, marks, origin)
    ax.legend(loc="lower left")
    return _svg(figure)


def attempts_svg(attempts: list[Attempt], marks: list[tuple[float, str]], origin: float, now: float) -> str:
    """One bar per attempt on the time axis (saving time in the label), the gaps between them
    being the queue waits, with the same marks as the curve."""
    figure = _figure(1.2 + 0.35 * len(attempts))
    ax = figure.add_subplot()
    for attempt in attempts:
        end = attempt.end if attempt.end is not None else now
        ax.barh(attempt.number, end - attempt.start, left=attempt.start - origin, height=0.6,
                color="tab:blue" if attempt.ending is None or attempt.ending.get("event") == "finished" else "tab:red")
    ax.set_yticks([a.number for a in attempts], [f"attempt {a.number}" for a in attempts])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run was submitted")
    _mark(ax, marks, origin, labels=False)  # the curve above carries the labels
    return _svg(figure)


def logged_metrics_svg(series: dict[str, list[tuple[float, float]]]) -> str:
    """Every logged metric column (``metrics.csv``) against the global step, one line each."""
    figure = _figure()
    ax = figure.add_subplot()
    for name, points in sorted(series.items()):
        ax.plot([x for x, _ in points], [y for _, y in points], marker=".", label=name)
    ax.set_xlabel("global step")
    ax.legend(loc="best", fontsize=8)
    return _svg(figure)
