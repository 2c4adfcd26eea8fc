"""``fulmen status / logs / cancel / list``: what the CLI runs for the job commands.

Each function prints to stdout (errors to stderr) and returns the command's exit code, so
``fulmen/launcher/cli.py`` only parses argv and calls one of:

- ``status(job: str | None) -> int``: scheduler state of JOB (default: the latest job);
  exit 0 when the state is known, 1 when the job is not found.
- ``logs(job: str, rank: int | None = None, follow: bool = False) -> int``: print rank N's
  log (default rank 0); ``follow`` keeps printing until the job ends (``tail -F``).
- ``cancel(job: str) -> int``: cancel the job (``scancel`` for SLURM).
- ``list_jobs() -> int``: one line per recorded job: id, backend, state, name, run dir.

JOB is a job id, a run name or a run-directory path (see ``fulmen.jobs.records``). State
comes from the backend: for SLURM, sacct (with squeue as fallback when accounting is off);
records of the torchx backends (``k8s``, ``torchx-local``) are answered by
``fulmen.launcher.torchx.{status,logs,cancel}(record)``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fulmen.errors import FulmenError
from fulmen.jobs.records import (
    JobRecord,
    all_records,
    find_record,
    latest_record,
    launcher_lost,
)

TORCHX_BACKENDS = ("k8s", "torchx-local")


def job_state(record: JobRecord) -> str:
    """The job's state in the scheduler's words (``UNKNOWN`` when it cannot be asked)."""
    try:
        if record.backend == "slurm":
            from fulmen.slurm import commands

            return commands.job_state(record.job_id).state
        if record.backend in TORCHX_BACKENDS:
            from fulmen.launcher import torchx

            return torchx.status(record)
    except (FulmenError, OSError):
        return "UNKNOWN"
    # The local backend records the state itself (it is the process that saw the job end),
    # unless it was killed before it could: then the run is LOST.
    state = str(record.extra.get("final_state", "UNKNOWN"))
    if state == "RUNNING" and launcher_lost(record):
        return "LOST"
    return state


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
    if record.backend == "slurm":
        from fulmen.slurm import commands

        try:
            state = commands.job_state(record.job_id)
            lines.append(f"state: {state.state}  (from {state.source})")
            if state.exit_code:
                lines.append(f"exit code: {state.exit_code}")
            if state.restarts is not None:
                lines.append(f"restarts: {state.restarts}")
            if state.nodelist:
                lines.append(f"nodes: {state.nodelist}")
            if state.elapsed:
                lines.append(f"elapsed: {state.elapsed}")
        except FulmenError as exc:
            lines.append(f"state: UNKNOWN ({exc})")
    else:
        lines.append(f"state: {job_state(record)}")
    lines.append(f"submitted: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.submit_time))}")
    lines.append(f"run dir: {record.run_dir}")
    print("\n".join(lines), flush=True)
    return 0


def logs(job: str, rank: int | None = None, follow: bool = False) -> int:
    """Print rank ``rank``'s log of ``job`` (all attempts, oldest first); ``follow`` tails it."""
    from fulmen.jobs.rundir import rank_log_path

    try:
        record = find_record(job)
    except FulmenError as exc:
        print(f"fulmen logs: {exc}", file=sys.stderr)
        return 1
    rank = 0 if rank is None else rank
    if record.backend in TORCHX_BACKENDS:
        from fulmen.launcher import torchx

        for line in torchx.logs(record, rank=rank, follow=follow):
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()
        return 0
    num_tasks = int(record.extra.get("num_tasks", 0) or 0)
    if num_tasks and not 0 <= rank < num_tasks:
        print(f"fulmen logs: --rank {rank} is out of range; job {record.job_id} has ranks 0..{num_tasks - 1}.",
              file=sys.stderr)
        return 1
    run_dir = Path(record.run_dir)
    current = rank_log_path(run_dir, rank)
    if follow and record.backend == "slurm":
        from fulmen.slurm.submit import wait_for_job

        _print_earlier_attempts(run_dir, rank)
        wait_for_job(record.job_id, run_dir, rank=rank)
        return 0
    earlier = _print_earlier_attempts(run_dir, rank)
    if not current.exists() and not earlier:
        print(f"fulmen logs: no log for rank {rank} yet ({current}); the job may still be queued.",
              file=sys.stderr)
        return 1
    if current.exists():
        sys.stdout.write(current.read_text(errors="replace"))
    sys.stdout.flush()
    return 0


def _print_earlier_attempts(run_dir: Path, rank: int) -> int:
    """Print ``rank_N.attempt_K.log`` files in order; returns how many there were."""
    attempts = sorted(
        (run_dir / "logs").glob(f"rank_{rank}.attempt_*.log"),
        key=lambda p: int(p.stem.rsplit("_", 1)[-1]),
    )
    for path in attempts:
        sys.stdout.write(f"===== {path.name} =====\n")
        sys.stdout.write(path.read_text(errors="replace"))
    if attempts:
        sys.stdout.write(f"===== rank_{rank}.log (latest attempt) =====\n")
    return len(attempts)


def cancel(job: str) -> int:
    """Cancel ``job``; exit 0 when the scheduler accepted the request."""
    try:
        record = find_record(job)
    except FulmenError as exc:
        print(f"fulmen cancel: {exc}", file=sys.stderr)
        return 1
    try:
        if record.backend == "slurm":
            from fulmen.slurm import commands

            commands.cancel(record.job_id)
        elif record.backend in TORCHX_BACKENDS:
            from fulmen.launcher import torchx

            torchx.cancel(record)
        else:
            print(f"fulmen cancel: job {record.job_id} runs on the {record.backend!r} backend, which has no "
                  "cancel command; stop its launcher (Ctrl-C for local runs).", file=sys.stderr)
            return 1
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
