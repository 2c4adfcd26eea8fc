"""``fulmen status / logs / cancel / list``: what the CLI runs for the job commands.

Each function prints to stdout (errors to stderr) and returns the command's exit code, so
``fulmen/launcher/cli.py`` only parses argv and calls one of:

- ``status(job: str | None) -> int``: scheduler state of JOB (default: the latest job);
  exit 0 when the state is known, 1 when the job is not found.
- ``logs(job: str, rank: int | None = None, follow: bool = False) -> int``: print rank N's
  log (default rank 0); ``follow`` keeps printing until the job ends (``tail -F``).
- ``cancel(job: str) -> int``: cancel the job (``scancel`` for SLURM).
- ``list_jobs() -> int``: one line per recorded job: id, backend, state, name, run dir.

JOB is a job id, a run name or a run-directory path (see ``fulmen.jobs.records``). Everything
about a job's state, log and cancellation comes from its backend, looked up by the record's
``backend`` name (``fulmen.launcher.backends.backend_for``): for SLURM that is sacct (squeue
when accounting is off), for torchx jobs torchx's runner, for local runs the record itself.
"""

from __future__ import annotations

import sys
import time

from fulmen.errors import FulmenError
from fulmen.jobs.records import JobRecord, all_records, find_record, latest_record
from fulmen.launcher.backends import backend_for


def job_state(record: JobRecord) -> str:
    """The job's state in the scheduler's words (``UNKNOWN`` when it cannot be asked)."""
    try:
        return backend_for(record.backend).describe(record).state
    except (FulmenError, OSError):
        return "UNKNOWN"


def status(job: str | None = None) -> int:
    """Print one job's state, restarts, nodes and run directory."""
    try:
        record = find_record(job) if job else latest_record()
    except FulmenError as exc:
        print(f"fulmen status: {exc}", file=sys.stderr)
        return 1
    if record is None:
        print("fulmen status: no jobs recorded yet (submit one with `launch`).", file=sys.stderr)
        return 1
    lines = [f"job {record.job_id} ({record.backend}) {record.name}"]
    try:
        described = backend_for(record.backend).describe(record)
        lines.append(f"state: {described.state}" + (f"  (from {described.source})" if described.source else ""))
        lines.extend(f"{name}: {value}" for name, value in described.details)
    except (FulmenError, OSError) as exc:
        lines.append(f"state: UNKNOWN ({exc})")
    lines.append(f"submitted: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.submit_time))}")
    lines.append(f"run dir: {record.run_dir}")
    print("\n".join(lines), flush=True)
    return 0


def logs(job: str, rank: int | None = None, follow: bool = False) -> int:
    """Print rank ``rank``'s log of ``job`` (all attempts, oldest first); ``follow`` tails it."""
    try:
        record = find_record(job)
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


def cancel(job: str) -> int:
    """Cancel ``job``; exit 0 when the scheduler accepted the request."""
    try:
        record = find_record(job)
        backend_for(record.backend).cancel(record)
    except FulmenError as exc:
        print(f"fulmen cancel: {exc}", file=sys.stderr)
        return 1
    print(f"cancelled job {record.job_id} ({record.name})", flush=True)
    return 0


def list_jobs() -> int:
    """One line per recorded job, oldest first."""
    records = all_records()
    if not records:
        print("no jobs recorded yet (submit one with `launch`).")
        return 0
    rows = [("JOB", "BACKEND", "STATE", "NAME", "SUBMITTED", "RUN DIR")]
    for record in records:
        submitted = time.strftime("%m-%d %H:%M", time.localtime(record.submit_time))
        rows.append((record.job_id, record.backend, job_state(record), record.name, submitted, record.run_dir))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0
