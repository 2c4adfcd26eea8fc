"""The ``fulmen`` subcommands that look after jobs: status, logs, cancel, list, events, report, sweep.

``fulmen/launcher/cli.py`` builds the ``fulmen`` parser and hands everything but ``launch`` here:
``add_job_parsers`` declares the subcommands and ``run_job_command`` runs the parsed one. The
commands themselves live in ``job_commands`` (one job), ``sweep_cli`` / ``sweep_status`` (a sweep)
and ``run_report`` (the HTML page); they are imported on use, so ``fulmen --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

JOB_HELP = "job id, run name or run directory (default: the latest here)"
SWEEP_HELP = "the sweep dir (default: the latest sweep here)"


def add_job_parsers(sub: Any) -> None:
    """Add status, logs, cancel, list, events, report and sweep to ``fulmen``'s subparsers."""
    status = sub.add_parser("status", help="state of a job or a sweep (default: the latest launched under this folder)")
    status.add_argument("job", nargs="?", help="job id, run name, run directory, or a sweep dir / array id")
    status.add_argument("--json", action="store_true", help="the state, progress and summary as one JSON object")
    status.add_argument("--watch", action="store_true", help="redraw until the job ends; Ctrl-C stops watching")
    status.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                        help="with --watch: seconds between redraws (default 2)")
    logs = sub.add_parser("logs", help="print a rank's log")
    logs.add_argument("job", nargs="?", help=JOB_HELP)
    logs.add_argument("--rank", type=int, default=None, help="global rank (default 0)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    cancel = sub.add_parser("cancel", help="cancel a job, or a sweep's trials")
    cancel.add_argument("job", nargs="?", help=JOB_HELP + "; a sweep dir or array id cancels its trials")
    cancel.add_argument("--trial", type=int, metavar="N", help="a sweep: only trial N")
    listing = sub.add_parser("list", help="list the jobs launched under this folder")
    for command in (status, logs, cancel, listing):
        command.add_argument("--all", dest="all_jobs", action="store_true",
                             help="every recorded job, not only those launched under the current folder")
    events = sub.add_parser("events", help="the timeline of a job: starts, saves, signals, stops, restarts")
    events.add_argument("job", nargs="?", help=JOB_HELP)
    events.add_argument("--json", action="store_true", help="the events as JSON lines, as logged")
    events.add_argument("--all", dest="all_jobs", action="store_true", help="pick the latest of every recorded job")
    report = sub.add_parser("report", help="one self-contained HTML page: timeline, training curve, lost time")
    report.add_argument("job", nargs="?", help=JOB_HELP)
    report.add_argument("-o", "--output", metavar="HTML", help="where to write it (default: <run dir>/report.html)")
    report.add_argument("--all", dest="all_jobs", action="store_true", help="pick the latest of every recorded job")
    _add_sweep_parsers(sub)


def _add_sweep_parsers(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="look at a sweep's trials (launch --sweep ...)")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", required=True, metavar="SWEEP_COMMAND")
    results = sweep_sub.add_parser("results", help="the trials ranked by a metric (default: the latest sweep here)")
    results.add_argument("sweep", nargs="?", help="the sweep dir (fulmen_runs/<name>-sweep-<id>)")
    results.add_argument("--sort", metavar="METRIC", help="rank by this metric (default: ModelCheckpoint's monitor)")
    results.add_argument("--json", action="store_true", help="print JSON: one object per trial")
    status = sweep_sub.add_parser("status", help="each trial's values, state, step, metric and job")
    status.add_argument("sweep", nargs="?", help=SWEEP_HELP)
    cancel = sweep_sub.add_parser("cancel", help="cancel the trials still queued or running (SLURM)")
    cancel.add_argument("sweep", nargs="?", help=SWEEP_HELP)
    cancel.add_argument("--trial", type=int, metavar="N", help="only trial N")


def _job_commands() -> Any:
    """``fulmen.launcher.job_commands``, imported on use (it loads the backends' registry)."""
    return importlib.import_module("fulmen.launcher.job_commands")


def run_job_command(ns: argparse.Namespace) -> int:
    """Run the subcommand ``ns`` names (anything but ``launch``); returns its exit code."""
    if ns.command == "sweep":
        from fulmen.launcher import sweep_cli

        if ns.sweep_command == "cancel":
            return sweep_cli.cancel(ns.sweep, trial=ns.trial)
        if ns.sweep_command == "status":
            from fulmen.launcher.sweep_status import sweep_status

            return sweep_status(sweep_cli.find_sweep(ns.sweep))
        return sweep_cli.results(ns.sweep, sort=ns.sort, as_json=ns.json)
    commands = _job_commands()
    if ns.command == "status":
        return int(commands.status(ns.job, all_jobs=ns.all_jobs, as_json=ns.json,
                                   watch=ns.interval if ns.watch else None))
    if ns.command == "events":
        return int(commands.events(ns.job, all_jobs=ns.all_jobs, as_json=ns.json))
    if ns.command == "logs":
        return int(commands.logs(ns.job, rank=ns.rank, follow=ns.follow, all_jobs=ns.all_jobs))
    if ns.command == "cancel":
        return int(commands.cancel(ns.job, all_jobs=ns.all_jobs, trial=ns.trial))
    if ns.command == "report":
        return int(commands.report(ns.job, all_jobs=ns.all_jobs, output=ns.output))
    return int(commands.list_jobs(all_jobs=ns.all_jobs))
