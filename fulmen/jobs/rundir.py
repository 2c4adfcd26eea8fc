"""The run directory: one folder per logical run, stable across restarts and requeues.

Layout (docs/internals.md, "Run directory")::

    <run_dir>/spec.json          the JobSpec that started the run
    <run_dir>/logs/rank_N.log    each rank's stdout and stderr (latest attempt)
    <run_dir>/logs/rank_N.attempt_K.log   earlier attempts, kept when a restart reuses the name
    <run_dir>/checkpoints/resume/   the run's resume checkpoint, only while the run is unfinished
    <run_dir>/lightning_logs/version_N/checkpoints/   ModelCheckpoint files (Lightning's place)

Every rank finds it through ``FULMEN_RUN_DIR``; the Trainer uses it as its default root dir.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fulmen.jobs import events
from fulmen.jobs.records import PRIVATE_DIR_MODE, JobRecord, new_record, write_private, write_record
from fulmen.jobs.spec import JobSpec

SPEC_FILE = "spec.json"
# Variables every fulmen launcher sets for each rank (torchrun sets all but the FULMEN_ ones).
RUN_DIR_VARIABLE = "FULMEN_RUN_DIR"
RESTART_COUNT_VARIABLE = "FULMEN_RESTART_COUNT"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def new_run_id() -> str:
    """A short id unique to one run (time-ordered prefix, random suffix)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


def run_dir_for(spec: JobSpec, run_id: str) -> Path:
    """Where the run lives: ``spec.run_dir`` when given, else ``<run_root>/<job name>-<run id>``."""
    if spec.run_dir:
        return Path(spec.run_dir).resolve()
    name = _UNSAFE.sub("_", spec.job_name) or "run"
    return (Path(spec.run_root) / f"{name}-{run_id}").resolve()


@dataclasses.dataclass(frozen=True)
class NewRun:
    """A run about to start: its id, its folder, and the spec pinned to that folder.

    The preamble every backend shares: ``new_run(spec)`` decides (no I/O, so a dry run can show
    it), ``create()`` makes the folder and writes ``spec.json`` once the job really starts, and
    ``record(job_id, backend)`` writes ``job.json`` once the scheduler has named the job.
    """

    spec: JobSpec
    run_id: str
    run_dir: Path

    def create(self) -> Path:
        """Create the folders and write ``spec.json`` (safe on a reused run directory)."""
        return prepare_run_dir(self.spec, self.run_dir)

    def record(self, job_id: str, backend: str, **extra: Any) -> JobRecord:
        """Write the job record (``job.json`` + the per-user index) and return it; node 0 also
        logs the ``submitted`` event (``fulmen.jobs.events``)."""
        spec = self.spec.to_record()
        record = new_record(job_id, backend, self.run_dir, self.spec.job_name, spec, **extra)
        write_record(record)
        if self.spec.node_rank == 0:
            events.append_event(
                self.run_dir, "submitted", backend=backend, job_id=job_id, spec_digest=events.spec_digest(spec),
                nodes=self.spec.nodes, ranks_per_node=self.spec.ranks_per_node, max_restarts=self.spec.max_restarts,
            )
        return record


def new_run(spec: JobSpec, run_id: str | None = None) -> NewRun:
    """The run ``spec`` starts: ``--run-dir`` if given, else a fresh folder under the run root."""
    run_id = run_id or new_run_id()
    run_dir = run_dir_for(spec, run_id)
    return NewRun(dataclasses.replace(spec, run_dir=str(run_dir)), run_id, run_dir)


def prepare_run_dir(spec: JobSpec, run_dir: Path) -> Path:
    """Create the folders and write ``spec.json`` (atomically); safe to call on a reused run dir.

    No ``checkpoints/`` folder up front: the Trainer creates ``checkpoints/resume/`` when it
    saves a resume checkpoint, and ModelCheckpoint writes where Lightning does.
    The run dir and its logs are created owner-only (0700): they hold the job's command line,
    environment names and output. A reused run dir keeps the modes it has.
    """
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    (run_dir / "logs").mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    write_spec(run_dir, spec)
    return run_dir


def write_spec(run_dir: Path, spec: JobSpec) -> Path:
    """``spec.json`` (0600, without secret values: ``JobSpec.to_record``), written through a temp
    file and a rename, so a reader never sees half of it."""
    return write_private(run_dir / SPEC_FILE, json.dumps(spec.to_record(), indent=2, sort_keys=True) + "\n")


@contextmanager
def private_files() -> Iterator[None]:
    """Files created inside are owner-only (umask 077): for writers we do not control, such as
    submitit pickling a task (with its ``--env`` values) into the run dir. Process-wide while
    it lasts; the launcher is the only thread creating files then."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def read_spec(run_dir: Path) -> JobSpec:
    """The JobSpec a run was started with."""
    return JobSpec.from_dict(json.loads((run_dir / SPEC_FILE).read_text()))


def rank_log_path(run_dir: Path, global_rank: int) -> Path:
    """The log file of ``global_rank`` for the current attempt."""
    return run_dir / "logs" / f"rank_{global_rank}.log"


def rotate_rank_log(run_dir: Path, global_rank: int) -> Path:
    """Move an existing ``rank_N.log`` aside (``rank_N.attempt_K.log``) and return the fresh path.

    Restarts reuse the run directory; without this the new attempt would truncate the log
    that explains why the previous one died.
    """
    path = rank_log_path(run_dir, global_rank)
    if path.exists():
        attempt = 0
        while (aside := path.with_name(f"rank_{global_rank}.attempt_{attempt}.log")).exists():
            attempt += 1
        os.replace(path, aside)
    return path


def tail(path: Path, lines: int = 20, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
