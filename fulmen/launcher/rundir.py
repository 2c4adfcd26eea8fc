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

import json
import os
import re
import time
import uuid
from pathlib import Path

from fulmen.launcher.spec import JobSpec

SPEC_FILE = "spec.json"
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


def prepare_run_dir(spec: JobSpec, run_dir: Path) -> Path:
    """Create the folders and write ``spec.json`` (atomically); safe to call on a reused run dir.

    No ``checkpoints/`` folder up front: the Trainer creates ``checkpoints/resume/`` when it
    saves a resume checkpoint, and ModelCheckpoint writes where Lightning does.
    """
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    write_spec(run_dir, spec)
    return run_dir


def write_spec(run_dir: Path, spec: JobSpec) -> Path:
    """``spec.json`` written through a temp file and a rename, so a reader never sees half of it."""
    path = run_dir / SPEC_FILE
    tmp = path.with_name(f".{SPEC_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


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
