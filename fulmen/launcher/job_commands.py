"""``fulmen status / logs / cancel / list / events / report``: what the CLI runs for the job commands.

Each function prints to stdout (errors to stderr) and returns the command's exit code, so
``fulmen/launcher/cli.py`` only parses argv and calls one of:

- ``status(job: str | None, as_json=False, watch=None) -> int``: scheduler state of JOB, then its
  progress from the run's event log (``fulmen.jobs.timeline``); exit 0 when the state is known, 1
  when the job is not found. A sweep (dir, name or array id) gets one row per trial
  (``fulmen.launcher.sweep_status``); ``watch`` redraws every ``watch`` seconds until it ends.
- ``events(job: str | None, as_json=False) -> int``: the run's timeline (``events.jsonl``).
- ``logs(job: str | None, rank: int | None = None, follow: bool = False) -> int``: print rank N's
  log (default rank 0); ``follow`` keeps printing until the job ends (``tail -F``).
- ``cancel(job: str | None, trial=None) -> int``: cancel the job (``scancel`` for SLURM); a sweep's
  trials (all, or trial N).
- ``report(job: str | None, output=None) -> int``: write the run's self-contained HTML report.
- ``list_jobs() -> int``: one line per recorded job: id, backend, state, name, step/total, attempts, run dir.

JOB is a job id, a run name or a run-directory path (see ``fulmen.jobs.records``), looked up
among all recorded jobs. Without a JOB, a command takes the latest job launched from the current
directory tree and says which one it took (the per-user records hold every project's jobs, and
"the latest" of all of them is usually another project's); ``all_jobs=True`` (``--all``) widens
that, and ``list_jobs`` alike, to every recorded job. Everything
about a job's state, log and cancellation comes from its backend, looked up by the record's
``backend`` name (``fulmen.launcher.backends.backend_for``): for SLURM that is sacct (squeue
when accounting is off), for torchx jobs torchx's runner, for local runs the record itself.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from fulmen.errors import FulmenError, LaunchError
from fulmen.jobs import events as run_events
from fulmen.jobs import timeline
from fulmen.jobs.records import JobRecord, all_records, find_record, latest_record
from fulmen.launcher.backends import backend_for
from fulmen.launcher.status_watch import Screen

ALL_HINT = "fulmen list --all for others"
# Scheduler states in which the job may still train (an ETA means something); others have ended or are LOST.
LIVE_STATES = frozenset({"RUNNING", "PENDING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "UNKNOWN"})


def pick_record(job: str | None, *, all_jobs: bool = False) -> JobRecord:
    """JOB's record; without JOB the latest job launched under the current directory (all: of all).

    Says on stderr which job it took, since the user did not name it. LaunchError when there is
    none, naming how many jobs live elsewhere.
    """
    if job:
        return find_record(job)
    here = Path.cwd()
    record = latest_record(None if all_jobs else here)
    if record is None:
        if all_jobs:
            raise LaunchError("no jobs recorded yet (submit one with `launch`).")
        elsewhere = len(all_records())
        raise LaunchError(
            f"no jobs launched under {here}"
            + (f" ({elsewhere} elsewhere: fulmen list --all)." if elsewhere else " (submit one with `launch`).")
            + "\nHINT: name the job (job id, run name or run dir), run from the folder you launched it in, "
            "or pass --all."
        )
    where = "of all recorded jobs" if all_jobs else f"launched under {here}"
    print(f"latest job {where}: {record.job_id} ({ALL_HINT})", file=sys.stderr, flush=True)
    return record


def job_state(record: JobRecord) -> str:
    """The job's state in the scheduler's words (``UNKNOWN`` when it cannot be asked)."""
    try:
        return backend_for(record.backend).describe(record).state
    except (FulmenError, OSError):
        return "UNKNOWN"


def status(job: str | None = None, *, all_jobs: bool = False, as_json: bool = False,
           watch: float | None = None) -> int:  # fmt: skip
    """Print one job's state, then its progress from the run's event log and progress file:
    attempt, nodes x ranks, step/total with a bar, speed, ETA, last checkpoint, time lost.

    A sweep (its dir, name or SLURM array id) gets one row per trial instead; ``watch`` redraws
    every ``watch`` seconds until the job ends (``fulmen.launcher.status_watch``)."""
    from fulmen.launcher import sweep_status
    from fulmen.launcher.status_watch import watch_screen

    sweep_dir = sweep_status.find_sweep_dir(job) if job else None
    if sweep_dir is not None:
        return sweep_status.sweep_status(sweep_dir, as_json=as_json, watch=watch)
    try:
        record = pick_record(job, all_jobs=all_jobs)
    except FulmenError as exc:
        print(f"fulmen status: {exc}", file=sys.stderr)
        return 1
    if as_json:
        state = job_state(record)
        summary = run_summary(record)
        payload = {"job_id": record.job_id, "backend": record.backend, "name": record.name, "state": state,
                   "run_dir": record.run_dir, "submit_time": record.submit_time,
                   **dataclasses.asdict(summary), "lost_s": summary.lost_s}
        print(json.dumps(payload, indent=2, sort_keys=True, default=str), flush=True)
        return 0
    if watch is not None:
        return watch_screen(lambda: status_screen(record), watch)
    print("\n".join(status_screen(record).lines), flush=True)
    return 0


def status_screen(record: JobRecord) -> Screen:
    """What ``fulmen status JOB`` prints for ``record``, its one-line digest, and whether it may go on."""
    lines = [f"job {record.job_id} ({record.backend}) {record.name}"]
    state = "UNKNOWN"
    try:
        described = backend_for(record.backend).describe(record)
        state = described.state
        lines.append(f"state: {described.state}" + (f"  (from {described.source})" if described.source else ""))
        lines.extend(f"{name}: {value}" for name, value in described.details)
    except (FulmenError, OSError) as exc:
        lines.append(f"state: UNKNOWN ({exc})")
    summary = run_summary(record)
    lines.append(f"submitted: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.submit_time))}")
    lines.extend(timeline.status_lines(summary, live=state in LIVE_STATES))
    lines.append(f"run dir: {record.run_dir}")
    step = "-" if summary.step is None else f"{summary.step}/{summary.total if summary.total else '?'}"
    metric = f" {summary.metric}={summary.metric_value:.4g}" if summary.metric and summary.metric_value is not None else ""
    digest = f"job {record.job_id} {state} attempt {summary.attempts} step {step}{metric}"
    return Screen(lines, digest, live=state in LIVE_STATES)


def run_summary(record: JobRecord) -> timeline.RunSummary:
    """What the run's event log and progress file say about ``record``'s run."""
    return timeline.summarize(run_events.read_events(record.run_dir), run_events.read_progress(record.run_dir))


def events(job: str | None = None, *, all_jobs: bool = False, as_json: bool = False) -> int:
    """Print the run's timeline (``as_json``: the logged lines, one JSON object each)."""
    try:
        record = pick_record(job, all_jobs=all_jobs)
    except FulmenError as exc:
        print(f"fulmen events: {exc}", file=sys.stderr)
        return 1
    logged = run_events.read_events(record.run_dir)
    if as_json:
        for event in logged:
            print(json.dumps(event, sort_keys=True))
    elif not logged:
        print(f"no events logged for job {record.job_id} (run dir {record.run_dir}).")
    else:
        print("\n".join(timeline.event_lines(logged)), flush=True)
    return 0


def logs(job: str | None = None, rank: int | None = None, follow: bool = False, *, all_jobs: bool = False) -> int:
    """Print rank ``rank``'s log of ``job`` (all attempts, oldest first); ``follow`` tails it."""
    try:
        record = pick_record(job, all_jobs=all_jobs)
    except FulmenError as exc:
        print(f"fulmen logs: {exc}", file=sys.stderr)
        return 1
    rank = 0 if rank is None else rank
    num_tasks = int(record.extra.get("num_tasks", 0) or 0)
    if num_tasks and not 0 <= rank < num_tasks:
        print(f"fulmen logs: --rank {rank} is out of range; job {record.job_id} has ranks 0..{num_tasks - 1}.",
              file=sys.stderr)
        return 1
    try:
        for text in backend_for(record.backend).logs(record, rank=rank, follow=follow):
            sys.stdout.write(text)
            sys.stdout.flush()
    except FulmenError as exc:
        print(f"fulmen logs: {exc}", file=sys.stderr)
        return 1
    return 0


def cancel(job: str | None = None, *, all_jobs: bool = False, trial: int | None = None) -> int:
    """Cancel ``job``; exit 0 when the scheduler accepted the request.

    A sweep (its dir, name or SLURM array id) cancels every trial still queued or running, or
    only trial ``trial`` (``fulmen.launcher.sweep_cli.cancel``)."""
    from fulmen.launcher import sweep_cli, sweep_status

    try:
        sweep_dir = sweep_status.find_sweep_dir(job) if job else None
        if sweep_dir is not None:
            return sweep_cli.cancel(str(sweep_dir), trial=trial)
        if trial is not None:
            raise LaunchError(f"--trial {trial} is for a sweep, but {job or 'the latest job'} is not one "
                              "(no sweep.json in a folder of that name, no array of that id).\n"
                              "HINT: fulmen cancel fulmen_runs/<name>-sweep-<id> --trial N")
        record = pick_record(job, all_jobs=all_jobs)
        backend_for(record.backend).cancel(record)
    except FulmenError as exc:
        print(f"fulmen cancel: {exc}", file=sys.stderr)
        return 1
    print(f"cancelled job {record.job_id} ({record.name})", flush=True)
    return 0


def report(job: str | None = None, *, all_jobs: bool = False, output: str | None = None) -> int:
    """Write the run's HTML report (``fulmen.jobs.run_report``) and print where it is."""
    from fulmen.jobs.run_report import write_report

    try:
        record = pick_record(job, all_jobs=all_jobs)
    except FulmenError as exc:
        print(f"fulmen report: {exc}", file=sys.stderr)
        return 1
    path = write_report(Path(record.run_dir), Path(output) if output else None,
                        title=f"job {record.job_id} ({record.backend}) {record.name}")
    print(f"wrote {path}", flush=True)
    return 0


def list_jobs(*, all_jobs: bool = False) -> int:
    """One line per job launched under the current directory (``all_jobs``: every recorded job), oldest first."""
    here, everything = Path.cwd(), all_records()
    records = everything if all_jobs else [record for record in everything if record.launched_under(here)]
    if not records:
        elsewhere = len(everything) - len(records)
        if elsewhere:
            print(f"no jobs launched under {here}; {elsewhere} elsewhere (fulmen list --all).")
        else:
            print("no jobs recorded yet (submit one with `launch`).")
        return 0
    if not all_jobs:
        others = len(everything) - len(records)
        print(f"jobs launched under {here}" + (f" ({others} elsewhere: fulmen list --all)" if others else "") + ":")
    rows = [("JOB", "BACKEND", "STATE", "NAME", "SUBMITTED", "STEP", "ATTEMPTS", "RUN DIR")]
    for record in records:
        submitted = time.strftime("%m-%d %H:%M", time.localtime(record.submit_time))
        summary = run_summary(record)
        step = "-" if summary.step is None else f"{summary.step}/{summary.total if summary.total else '?'}"
        rows.append((record.job_id, record.backend, job_state(record), record.name, submitted, step,
                     str(summary.attempts or "-"), record.run_dir))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0
