"""What fulmen remembers about a torchx job, and ``status`` / ``logs`` / ``cancel`` for it.

Next to the generic job record (``job.json``, fulmen/jobs/records.py) a torchx run directory
holds ``torchx.json``: the torchx app handle, the scheduler, the role name and, for
torchx-local, the launcher's pid and the replicas' log folders plus the final state the
launcher saw. That split keeps the generic record free of torchx details.

- Kubernetes jobs are asked about through torchx's runner (``kubectl`` config of the caller).
- torchx-local jobs are supervised by the launcher that started them (torchx keeps local apps
  in memory), so their state comes from ``torchx.json`` and the launcher's pid (``LOST`` when
  it died without recording an end), and ``cancel`` signals that launcher, which then stops
  every replica; replicas orphaned by a killed launcher are found by their ``TORCHX_JOB_ID``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from fulmen.errors import LaunchError
from fulmen.jobs import records, rundir
from fulmen.jobs.logs import file_lines
from fulmen.jobs.spec import JobSpec

if TYPE_CHECKING:
    from torchx.specs import AppDryRunInfo

TORCHX_FILE = "torchx.json"
#: States after which a job does not change any more (torchx's AppState names).
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
#: A torchx-local job whose launcher is gone without writing a final state.
LOST_STATE = "LOST"


@dataclass
class TorchxRun:
    """The torchx side of one run (``<run_dir>/torchx.json``)."""

    handle: str
    scheduler: str
    role: str
    ranks_per_node: int
    launcher_pid: int | None = None
    launcher_host: str | None = None
    replica_log_dirs: list[str] = field(default_factory=list)
    state: str = "SUBMITTED"
    job_record: dict[str, Any] = field(default_factory=dict)  # a copy of job.json as submitted

    def save(self, run_dir: Path) -> Path:
        """Write ``torchx.json`` atomically (a reader never sees half a file)."""
        path = run_dir / TORCHX_FILE
        tmp = path.with_name(f".{TORCHX_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, run_dir: Path) -> TorchxRun:
        path = Path(run_dir) / TORCHX_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise LaunchError(
                f"{path} does not exist, so {run_dir} is not a torchx run (or it was never submitted).\n"
                "HINT: `fulmen list` shows the runs and their backends."
            ) from None


def create_run_dir(spec: JobSpec) -> tuple[Path, str]:
    """A fresh run directory with ``spec.json``; returns it and the run id."""
    run_id = rundir.new_run_id()
    run_dir = rundir.prepare_run_dir(spec, rundir.run_dir_for(spec, run_id))
    return run_dir, run_id


def replica_log_dirs(info: AppDryRunInfo, role: str) -> list[str]:
    """The local scheduler's per-replica log folders (from its dry-run request)."""
    return list(info.request.role_log_dirs[role])


def record_submission(
    spec: JobSpec, run_dir: Path, *, handle: str, scheduler: str, info: AppDryRunInfo, role: str
) -> tuple[TorchxRun, records.JobRecord]:
    """Write ``job.json`` (the generic record) and ``torchx.json`` for a job torchx just accepted.

    The replicas run the local backend inside this run directory; it leaves this record alone
    because the run belongs to the torchx job.
    """
    record = records.new_record(
        handle, spec.cluster, run_dir, spec.job_name, spec.to_record(), scheduler=scheduler
    )
    local = spec.cluster == "torchx-local"
    run = TorchxRun(
        handle=handle,
        scheduler=scheduler,
        role=role,
        ranks_per_node=spec.ranks_per_node,
        launcher_pid=os.getpid() if local else None,
        launcher_host=socket.gethostname() if local else None,
        replica_log_dirs=replica_log_dirs(info, role) if local else [],
        state="RUNNING" if local else "SUBMITTED",
        job_record=asdict(record),
    )
    run.save(run_dir)
    records.write_record(record)
    return run, record


def record_final_state(run_dir: Path, run: TorchxRun, state: str) -> None:
    """Store the state the waiting launcher saw last (the only source for torchx-local jobs)."""
    run.state = state
    run.save(run_dir)


def replica_log_path(info: AppDryRunInfo, role: str, replica: int) -> Path:
    """Replica ``replica``'s combined stdout+stderr as torchx's local scheduler writes it."""
    return Path(replica_log_dirs(info, role)[replica]) / "combined.log"


def _require_same_host(run: TorchxRun, run_dir: Path) -> None:
    if run.launcher_host and run.launcher_host != socket.gethostname():
        raise LaunchError(
            f"The torchx-local run {run_dir} is supervised by a launcher on {run.launcher_host}, "
            f"not on this machine ({socket.gethostname()}).\n"
            f"HINT: run the command on {run.launcher_host}."
        )


@contextlib.contextmanager
def _cluster_errors(what: str, handle: str) -> Iterator[None]:
    """Turn a failing torchx/kubernetes call into a LaunchError that says how to check access."""
    try:
        yield
    except LaunchError:
        raise
    except Exception as exc:  # the kubernetes client raises many unrelated types
        raise LaunchError(
            f"Could not {what} {handle}: {type(exc).__name__}: {exc}\n"
            "HINT: check that kubectl reaches the cluster (`kubectl get vcjob -A`) with the same "
            "kubeconfig as this shell."
        ) from exc


def status_of(run_dir: Path) -> str:
    """The job's state: torchx's AppState name, or ``LOST`` for a local job whose launcher died."""
    from fulmen.launcher.torchx import open_runner

    run = TorchxRun.load(run_dir)
    if run.scheduler == "local_cwd":
        if run.state in TERMINAL_STATES:
            return run.state
        _require_same_host(run, run_dir)
        return run.state if run.launcher_pid and records.pid_alive(run.launcher_pid) else LOST_STATE
    with _cluster_errors("get the status of", run.handle), open_runner() as runner:
        status = runner.status(run.handle)
    return status.state.name if status is not None else "UNKNOWN"


def logs_of(run_dir: Path, rank: int = 0, follow: bool = False) -> Iterator[str]:
    """Lines of rank ``rank``'s output.

    torchx-local: the rank's own ``logs/rank_N.log`` written by the local backend. Kubernetes:
    the log of the pod that runs the rank (replica ``rank // ranks_per_node``), read through
    torchx, which shows that node's local backend output (rank 0 of the node and any errors).
    """
    from fulmen.launcher.torchx import open_runner

    run = TorchxRun.load(run_dir)
    if run.scheduler == "local_cwd":
        def done() -> bool:
            return status_of(run_dir) in TERMINAL_STATES | {LOST_STATE}

        yield from file_lines(rundir.rank_log_path(run_dir, rank), follow=follow, is_done=done)
        return
    replica = rank // max(run.ranks_per_node, 1)
    with _cluster_errors("read the logs of", run.handle), open_runner() as runner:
        for line in runner.log_lines(run.handle, run.role, replica, should_tail=follow):
            yield line.rstrip("\n")


def job_processes(handle: str) -> list[psutil.Process]:
    """Live processes of a torchx-local job: torchx gives every replica ``TORCHX_JOB_ID=handle``,
    and the local backend's ranks (and their DataLoader workers) inherit it."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("TORCHX_JOB_ID") == handle and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def cancel_run(run_dir: Path, grace_s: float = 5.0) -> None:
    """Stop the job: delete the Volcano job, or stop a torchx-local job.

    torchx-local: the launcher is signalled and stops its replicas itself (and records the
    state). If the launcher is gone (killed), its replicas live on in their own sessions; they
    are found by ``TORCHX_JOB_ID`` and terminated here (SIGTERM, then SIGKILL after ``grace_s``).
    """
    run = TorchxRun.load(run_dir)
    if run.scheduler != "local_cwd":
        from fulmen.launcher.torchx import open_runner

        with _cluster_errors("cancel", run.handle), open_runner() as runner:
            runner.cancel(run.handle)
        return
    if run.state in TERMINAL_STATES:
        return
    _require_same_host(run, run_dir)
    if run.launcher_pid and records.pid_alive(run.launcher_pid):
        os.kill(run.launcher_pid, signal.SIGTERM)
        return
    orphans = job_processes(run.handle)
    if not orphans:
        raise LaunchError(
            f"The launcher of {run.handle} (pid {run.launcher_pid}) is gone and no process of the job "
            "is left, so there is nothing to cancel."
        )
    for proc in orphans:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(orphans, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    record_final_state(run_dir, run, "CANCELLED")
