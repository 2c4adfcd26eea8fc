"""Requeue a SLURM job from inside it: ``scontrol requeue``, once per run, capped.

Called on global rank 0 by ``fulmen.runtime.preemption.hand_off`` after the resume checkpoint
is saved, and by the rank entry (``fulmen.slurm.rank_entry``) when a signal arrived outside
``Trainer.fit`` or an ordinary crash should be retried (``--requeue-on-failure``).

Why fulmen requeues itself rather than letting SLURM do it: a preempted job that exits during
the partition's GraceTime is recorded as COMPLETED and *not* requeued, and a job that reaches
its time limit is never requeued by SLURM. Requeueing keeps the job id, and the next run sees
``SLURM_RESTART_COUNT`` one higher. Only a RUNNING job is requeued: a job the user cancelled
(``scancel`` also sends SIGTERM) is already COMPLETING and stays cancelled.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fulmen.errors import FulmenError
from fulmen.jobs.events import append_event
from fulmen.jobs.spec import SlurmOptions
from fulmen.runtime.ranks import RankInfo
from fulmen.slurm import commands
from fulmen.slurm.environment import slurm_job_id

REQUEUE_DIR = "requeue"


def max_requeues_for(run_dir: str | None) -> int:
    """``--max-requeues`` of the run (from ``spec.json``), or the default when there is none."""
    if run_dir:
        try:
            from fulmen.jobs.rundir import read_spec

            return read_spec(Path(run_dir)).slurm.max_requeues
        except (OSError, ValueError, TypeError, FulmenError):
            pass
    return SlurmOptions().max_requeues


_DECLINED_AT_LIMIT: set[tuple[str | None, str, int]] = set()  # (run dir, job id, restarts) this process declined


def requeue_job(rank_info: RankInfo | None = None, *, reason: str = "stop signal: preemption or time limit") -> bool:
    """Ask SLURM to run this job again; True when it is (or already was) requeued.

    The id is array-aware (``ARRAYJOB_TASK``). Declines, with a message on stderr, when the run
    already had ``--max-requeues`` restarts. Safe to call more than once in one run (several
    code paths may see the same preemption): a marker file in the run directory makes the
    ``scontrol requeue`` happen once per run.
    """
    job_id = (rank_info.job_id if rank_info else None) or slurm_job_id(os.environ)
    if not job_id:
        _say(f"not requeued ({reason}): this process is not in a SLURM job")
        return False
    restarts = rank_info.restart_count if rank_info else int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    run_dir = (rank_info.run_dir if rank_info else None) or os.environ.get("FULMEN_RUN_DIR")
    limit = max_requeues_for(run_dir)
    if restarts >= limit:
        key = (run_dir, job_id, restarts)
        if key not in _DECLINED_AT_LIMIT:  # the Trainer's hand-off and the rank entry both ask: say it once
            _DECLINED_AT_LIMIT.add(key)
            _say(
                f"not requeued ({reason}): job {job_id} was already requeued {restarts} time(s), "
                f"the limit is --max-requeues {limit}. Its resume checkpoint is kept in the run directory; "
                "submit again with --run-dir to continue."
            )
        return False
    if run_dir and _marker_path(run_dir, job_id, restarts).exists():
        return True  # another code path of this run already requeued it
    state = _controller_state(job_id)
    if state not in (None, "RUNNING"):
        # `scancel` / `fulmen cancel` also sends SIGTERM, with the job already COMPLETING; a
        # cancelled job must stay cancelled (scontrol requeue would accept it and run it again).
        # Warning signals (time limit, preemption grace time) arrive while it is RUNNING.
        _say(f"not requeued ({reason}): job {job_id} is {state} (cancelled or ending)")
        return False
    marker = _claim_marker(run_dir, job_id, restarts)
    if marker is False:
        return True  # another code path of this run already requeued it
    try:
        commands.requeue(job_id)
    except FulmenError as exc:
        if isinstance(marker, Path):
            marker.unlink(missing_ok=True)
        _say(f"requeue of job {job_id} failed ({reason}): {exc}")
        return False
    _say(f"requeued job {job_id} ({reason}); next run is restart {restarts + 1} of at most {limit}")
    rank = rank_info.global_rank if rank_info else os.environ.get("SLURM_PROCID")
    append_event(run_dir, "requeued", by=f"fulmen (rank {rank}): {reason}", count=restarts + 1, limit=limit,
                 job_id=job_id, fsync=True)
    return True


def _controller_state(job_id: str) -> str | None:
    """JobState from scontrol, or None when it cannot tell (then requeue, as preemption needs)."""
    try:
        fields = commands.show_job(job_id)
    except FulmenError:
        return None
    return fields.get("JobState") if fields else None


def _marker_path(run_dir: str, job_id: str, restarts: int) -> Path:
    return Path(run_dir) / REQUEUE_DIR / f"{job_id}.restart{restarts}"


def _claim_marker(run_dir: str | None, job_id: str, restarts: int) -> Path | bool | None:
    """Create the once-per-run marker: its Path, False if it existed, None without a run dir."""
    if not run_dir:
        return None
    path = _marker_path(run_dir, job_id, restarts)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return path


def _say(message: str) -> None:
    print(f"fulmen: {message}", file=sys.stderr, flush=True)
