"""Job records: ``<run_dir>/job.json``, the facts ``fulmen status/logs/cancel/list`` start from.

A record says which backend ran a job, under which scheduler id, in which run directory, with
which spec, and when it was submitted. Scheduler state is *not* stored (it would go stale):
the job commands ask the scheduler each time.

Records are found by job id, run-directory path or run name. So that ``fulmen list`` works
from any folder, every written record is also appended to a per-user index
(``$XDG_STATE_HOME/fulmen/jobs.jsonl``, default ``~/.local/state/fulmen/jobs.jsonl``); the
index only points at run directories, the record in the run directory stays the truth.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fulmen.errors import LaunchError

RECORD_FILE = "job.json"
#: Run records hold the command line and the environment a job was given: owner-only.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file + rename) with mode 0600 from the start.

    The temp file is created 0600 (not chmod-ed afterwards), so no reader ever sees the
    content with looser permissions, whatever the umask.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, PRIVATE_FILE_MODE)  # an existing temp file kept its old mode through O_TRUNC
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class JobRecord:
    """One submitted job."""

    job_id: str
    backend: str  # "slurm", "local", "k8s", ...
    run_dir: str
    name: str
    submit_time: float
    spec: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific facts
    launch_dir: str = ""  # where `launch` was called ("" in records written before it was kept)

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / RECORD_FILE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        known = {k: data[k] for k in ("job_id", "backend", "run_dir", "name", "submit_time") if k in data}
        return cls(**known, spec=data.get("spec", {}), extra=data.get("extra", {}),
                   launch_dir=data.get("launch_dir", ""))

    def launched_under(self, directory: Path) -> bool:
        """Whether this job was launched in ``directory`` or below it, or keeps its run dir there.

        The run dir counts too, so that records written before ``launch_dir`` was kept (their
        run dirs default to ``<launch dir>/fulmen_runs/...``) and ``cd fulmen_runs`` still find them.
        """
        places = [Path(self.run_dir)] + ([Path(self.launch_dir)] if self.launch_dir else [])
        return any(_within(place, directory) for place in places)


def index_path() -> Path:
    """The per-user list of run directories that hold job records."""
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "fulmen" / "jobs.jsonl"


def write_record(record: JobRecord) -> Path:
    """Write ``job.json`` atomically and add the run directory to the index."""
    path = write_private(record.path, record.to_json())
    index = index_path()
    index.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "a") as handle:  # one short line per append: safe between processes
        handle.write(json.dumps({"run_dir": record.run_dir, "job_id": record.job_id}) + "\n")
    return path


def new_record(job_id: str, backend: str, run_dir: Path, name: str, spec: dict[str, Any], **extra: Any) -> JobRecord:
    """A record of a job submitted now, from the current directory."""
    return JobRecord(job_id, backend, str(run_dir), name, time.time(), spec, dict(extra), launch_dir=os.getcwd())


def read_record(run_dir: Path) -> JobRecord:
    """The record in ``run_dir``; LaunchError when there is none."""
    path = Path(run_dir) / RECORD_FILE
    try:
        return JobRecord.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise LaunchError(f"{run_dir} holds no job record ({RECORD_FILE}); was a job submitted from it?") from None
    except json.JSONDecodeError as exc:
        raise LaunchError(f"The job record {path} is not valid JSON ({exc}).") from None


def all_records() -> list[JobRecord]:
    """Every record the index points at that still exists, oldest submission first."""
    seen: dict[str, JobRecord] = {}
    try:
        lines = index_path().read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            run_dir = json.loads(line)["run_dir"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a crash; the others are still good
        if run_dir in seen:
            continue
        try:
            seen[run_dir] = read_record(Path(run_dir))
        except LaunchError:
            continue  # run directory deleted since
    return sorted(seen.values(), key=lambda r: r.submit_time)


def find_record(job: str) -> JobRecord:
    """A record by run-directory path, job id or run name (the newest when several match)."""
    path = Path(job)
    if (path / RECORD_FILE).is_file():
        return read_record(path)
    records = all_records()
    matches = [r for r in records if job in (r.job_id, Path(r.run_dir).name)] or [
        r for r in records if r.name == job
    ]
    if not matches:
        known = ", ".join(f"{r.job_id} ({Path(r.run_dir).name})" for r in records[-5:]) or "none"
        raise LaunchError(
            f"No job {job!r} in the job records (recent: {known}).\n"
            "HINT: pass a job id, a run name or a run directory; `fulmen list` shows them."
        )
    return matches[-1]


def records_under(directory: Path) -> list[JobRecord]:
    """The recorded jobs launched from ``directory``'s tree (``JobRecord.launched_under``), oldest first."""
    return [record for record in all_records() if record.launched_under(directory)]


def latest_record(under: Path | None = None) -> JobRecord | None:
    """The most recently submitted job (launched under ``under`` when given), or None."""
    records = all_records() if under is None else records_under(under)
    return records[-1] if records else None


def _within(path: Path, directory: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(directory))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def launcher_lost(record: JobRecord) -> bool:
    """True when the record says the run is still going but its launcher on this host is gone.

    A launcher killed with SIGKILL never writes its final state; without this check its run
    would show RUNNING forever. Records from another host cannot be checked from here (False).
    """
    pid, host = record.extra.get("launcher_pid"), record.extra.get("launcher_host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    return not pid_alive(pid)
