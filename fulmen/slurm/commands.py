"""The one seam to the SLURM command-line tools: scontrol, squeue, sacct, scancel.

Everything in fulmen that asks SLURM something or tells it to do something goes through
the functions here, so that tests can put a fake in one place and so that the parsing of
each tool's output lives next to the call that produces it. (submitit runs ``sbatch``
itself when it submits; that is the one exception, and it is submitit's seam.)

Functions return plain data (``str``, ``dict``, dataclasses) and raise
:class:`fulmen.errors.SlurmCommandError` with the command, its exit status and its stderr
when a tool fails or is not installed.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from fulmen.errors import SlurmCommandError

DEFAULT_TIMEOUT_S = 60.0

# sacct / squeue states in which the job will not run again by itself.
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


def run_command(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, check: bool = True) -> str:
    """Run one SLURM tool and return its stdout.

    With ``check`` (the default) a non-zero exit raises :class:`SlurmCommandError` quoting
    stderr; a missing tool always raises, with a HINT, because nothing can work without it.
    """
    if shutil.which(argv[0]) is None:
        raise SlurmCommandError(
            f"'{argv[0]}' was not found on PATH; fulmen needs the SLURM client tools for this.\n"
            "HINT: run on a SLURM login node, or for the local test cluster: "
            "bash ../shared/slurm/start-cluster.sh"
        )
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SlurmCommandError(
            f"'{' '.join(argv)}' did not answer within {timeout:.0f}s (is slurmctld up?)"
        ) from exc
    if check and proc.returncode != 0:
        raise SlurmCommandError(
            f"'{' '.join(argv)}' failed with exit status {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc.stdout


def parse_key_values(line: str) -> dict[str, str]:
    """Parse scontrol's one-line ``Key=Value Key2=Value2`` output into a dict.

    Values never contain spaces in the fields fulmen reads; a token without ``=`` is
    glued to the previous value (scontrol prints e.g. ``OS=Linux 6.1 #1 SMP`` unquoted).
    """
    result: dict[str, str] = {}
    last: str | None = None
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key and (key[0].isalpha()):
            result[key] = value
            last = key
        elif last is not None:
            result[last] += " " + token
    return result


# ---------------------------------------------------------------- scontrol


def show_hostnames(nodelist: str) -> list[str]:
    """Expand a nodelist (``n[1-3]``) with ``scontrol show hostnames``."""
    return run_command(["scontrol", "show", "hostnames", nodelist]).split()


@dataclass(frozen=True)
class PartitionInfo:
    """What submit-time validation needs to know about one partition."""

    name: str
    total_nodes: int
    total_cpus: int
    state: str
    is_default: bool
    max_nodes: int | None  # None: UNLIMITED
    gpus_per_node: int | None  # None: no GPU gres on the partition


def list_partitions() -> dict[str, PartitionInfo]:
    """Every partition the controller knows, by name."""
    out = run_command(["scontrol", "show", "partition", "--oneliner"])
    partitions = {}
    for line in out.splitlines():
        if line.strip():
            info = _partition_from_fields(parse_key_values(line))
            partitions[info.name] = info
    return partitions


def _partition_from_fields(fields: dict[str, str]) -> PartitionInfo:
    max_nodes = fields.get("MaxNodes", "UNLIMITED")
    total_nodes = int(fields.get("TotalNodes", "0"))
    gpus_total = None
    for item in fields.get("TRES", "").split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu" and value.isdigit():
            gpus_total = int(value)
    return PartitionInfo(
        name=fields["PartitionName"],
        total_nodes=total_nodes,
        total_cpus=int(fields.get("TotalCPUs", "0")),
        state=fields.get("State", "UNKNOWN"),
        is_default=fields.get("Default") == "YES",
        max_nodes=None if max_nodes == "UNLIMITED" else int(max_nodes),
        # TRES sums over nodes; fulmen assumes homogeneous nodes within a partition.
        gpus_per_node=(gpus_total // total_nodes) if gpus_total and total_nodes else None,
    )


def show_job(job_id: str) -> dict[str, str] | None:
    """``scontrol show job`` fields, or None when the controller no longer knows the job."""
    out = run_command(["scontrol", "show", "job", "--oneliner", job_id], check=False)
    line = out.strip().splitlines()[0] if out.strip() else ""
    return parse_key_values(line) if line.startswith("JobId=") else None


def requeue(job_id: str) -> None:
    """``scontrol requeue JOB``: the job keeps its id and runs again with SLURM_RESTART_COUNT+1."""
    run_command(["scontrol", "requeue", job_id])


# ---------------------------------------------------------------- scancel


def cancel(job_id: str, *, signal: str | None = None, batch_only: bool = False) -> None:
    """``scancel``: end the job, or with ``signal`` only send that signal to its step tasks."""
    argv = ["scancel"]
    if signal:
        argv.append(f"--signal={signal}")
    if batch_only:
        argv.append("--batch")
    run_command([*argv, job_id])


# ---------------------------------------------------------------- job state


@dataclass(frozen=True)
class JobState:
    """One job's state as SLURM reports it.

    ``state`` is SLURM's word (PENDING, RUNNING, COMPLETED, FAILED, REQUEUED, ...);
    ``source`` says who answered: ``"sacct"``, ``"squeue"`` or ``"none"`` (unknown job).
    """

    job_id: str
    state: str
    exit_code: str | None = None
    restarts: int | None = None
    nodelist: str | None = None
    elapsed: str | None = None
    source: str = "sacct"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


@functools.lru_cache(maxsize=1)
def accounting_enabled() -> bool:
    """True when sacct can answer (slurmdbd configured and reachable); asked once per process."""
    if shutil.which("sacct") is None:
        return False
    proc = subprocess.run(
        ["sacct", "-n", "-X", "-j", "0"], capture_output=True, text=True, timeout=DEFAULT_TIMEOUT_S, check=False
    )
    return proc.returncode == 0 and "disabled" not in proc.stderr.lower()


def max_array_size() -> int | None:
    """The controller's ``MaxArraySize`` (array indices go up to it minus one); None if unknown."""
    for line in run_command(["scontrol", "show", "config"], check=False).splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return None


def sacct_state(job_id: str) -> JobState | None:
    """The job's allocation state from accounting (the latest run), or None if sacct has no row."""
    out = run_command(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode,NodeList,Elapsed", "-j", job_id]
    )
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    # An array job lists one row per task; a plain job one row (its last run without -D).
    rows = [r for r in rows if r[0] == job_id] or rows
    if not rows:
        return None
    jid, state, exit_code, nodelist, elapsed = rows[-1][:5]
    # "CANCELLED by 0" -> "CANCELLED"
    return JobState(jid, state.split()[0], exit_code, None, nodelist or None, elapsed or None, "sacct")


def sacct_history(job_id: str) -> list[JobState]:
    """Every run of the job (``sacct -D``): one REQUEUED row per requeue, then the last run."""
    out = run_command(["sacct", "-n", "-X", "-D", "-P", "-o", "JobID,State,ExitCode,NodeList,Elapsed", "-j", job_id])
    history = []
    for line in out.splitlines():
        if line.strip():
            jid, state, exit_code, nodelist, elapsed = line.split("|")[:5]
            history.append(JobState(jid, state.split()[0], exit_code, None, nodelist or None, elapsed, "sacct"))
    return history


def squeue_state(job_id: str) -> JobState | None:
    """The job's state while the controller still lists it (queued, running, or recently ended)."""
    out = run_command(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%N|%M"], check=False)
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0] == job_id:
            return JobState(job_id, parts[1], None, None, parts[2] or None, parts[3], "squeue")
    return None


def job_state(job_id: str) -> JobState:
    """Best available state: sacct when accounting is on, else squeue, else ``UNKNOWN``.

    ``restarts`` comes from ``scontrol show job`` while the controller remembers the job.
    """
    state: JobState | None = None
    if accounting_enabled():
        state = sacct_state(job_id)
    if state is None:
        state = squeue_state(job_id)
    fields = show_job(job_id)
    restarts = int(fields["Restarts"]) if fields and fields.get("Restarts", "").isdigit() else None
    if state is None:
        if fields is not None:
            return JobState(job_id, fields.get("JobState", "UNKNOWN"), fields.get("ExitCode"), restarts,
                            fields.get("NodeList"), fields.get("RunTime"), "scontrol")
        return JobState(job_id, "UNKNOWN", source="none")
    return JobState(state.job_id, state.state, state.exit_code, restarts, state.nodelist, state.elapsed,
                    state.source)
