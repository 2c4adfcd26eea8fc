"""Where a SLURM task's output goes: the rank's log, and rank 0's two console streams.

``launch --cluster slurm --wait`` shows rank 0's output on the console exactly as the script
printed it: stdout on stdout, stderr on stderr, carriage returns and an unfinished last line
passed through, and nothing else (no ``fulmen: rank 0/N started`` line, no submitit ``INFO``
line). One combined file cannot give that back (stderr would reach stdout, and a line of
submitit's lands after the script's unfinished one), so rank 0's fds 1 and 2 are pipes whose
bytes a thread copies, unchanged, into

- ``logs/rank_0.log``: both streams interleaved, as every rank has (``fulmen logs``), and
- ``logs/rank_0.job<ID>.stdout`` / ``.stderr``: each stream alone, appended across requeues of
  job ID, which the submitting ``launch --wait`` copies to its own stdout and stderr
  (:func:`console_stream_path`; a new job in the same run dir gets new files).

Other ranks write straight into their log (fds 1 and 2 both point at it). fulmen's own lines
(:meth:`TaskOutput.note`) go into the log only. When the task is done, :meth:`TaskOutput.close`
puts srun's fds back, so what submitit prints after our task stays in submitit's own files.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from pathlib import Path

from fulmen.jobs.rundir import rotate_rank_log

CONSOLE_RANK = 0
CLOSE_TIMEOUT_S = 5.0  # how long a pipe may stay open after the task (a straggling grandchild holds it)
_READ_SIZE = 65536


def console_stream_path(run_dir: Path, job_id: str, stream: str) -> Path:
    """Rank 0's ``stream`` ("stdout" or "stderr") alone, for job ``job_id`` (requeues append)."""
    return Path(run_dir) / "logs" / f"rank_{CONSOLE_RANK}.job{job_id}.{stream}"


class TaskOutput:
    """This task's fds 1 and 2, pointed at its log (and, for rank 0, the console streams).

    Use :func:`capture_task_output`; call :meth:`close` once the task's work (and the report of
    how it ended) is done.
    """

    def __init__(self, log_path: Path, streams: dict[int, Path] | None) -> None:
        self.log_path = log_path
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = {fd: os.dup(fd) for fd in (1, 2)}
        self._log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pump: _Pump | None = None
        if streams is None:
            for fd in (1, 2):
                os.dup2(self._log_fd, fd)
            return
        read_ends = {}
        for fd, path in streams.items():
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            path.parent.mkdir(parents=True, exist_ok=True)
            read_ends[read_end] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pump = _Pump(read_ends, self._log_fd)
        self._pump.start()

    def note(self, line: str) -> None:
        """One line of fulmen's own for the log only (never the console)."""
        os.write(self._log_fd, (line.rstrip("\n") + "\n").encode("utf-8", errors="replace"))

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Give fds 1 and 2 back to srun's files, copy what is left in the pipes, close the files."""
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # drops our pipe ends: the pump sees the end of the output
            os.close(saved)
        self._saved = {}
        if self._pump is not None:
            self._pump.finish(timeout)
            if self._pump.is_alive():
                return  # still copying what a straggler writes; the process is about to leave anyway
        os.close(self._log_fd)


def capture_task_output(run_dir: Path, rank: int, job_id: str | None) -> TaskOutput:
    """Point this task's output at ``logs/rank_N.log`` (earlier attempts' logs are moved aside).

    Rank 0 of a SLURM job (``job_id`` set) also writes each stream alone for the console.
    """
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    log_path = rotate_rank_log(run_dir, rank)
    streams = None
    if rank == CONSOLE_RANK and job_id:
        streams = {1: console_stream_path(run_dir, job_id, "stdout"), 2: console_stream_path(run_dir, job_id, "stderr")}
    return TaskOutput(log_path, streams)


class _Pump(threading.Thread):
    """Copies rank 0's pipes, chunk by chunk in the order they arrive, to the log and each stream's file."""

    def __init__(self, targets: dict[int, int], log_fd: int) -> None:
        super().__init__(name="fulmen-task-output", daemon=True)
        self._targets = targets  # pipe read end -> that stream's file
        self._log_fd = log_fd
        self._finishing = threading.Event()

    def run(self) -> None:
        open_ends = set(self._targets)
        try:
            while open_ends:
                ready, _, _ = select.select(list(open_ends), [], [], 0.1)
                if not ready and self._finishing.is_set():
                    break  # the task is done and the pipes ran dry: a grandchild may hold them open
                for read_end in ready:
                    data = os.read(read_end, _READ_SIZE)
                    if not data:
                        open_ends.discard(read_end)
                        continue
                    _write_all(self._log_fd, data)
                    _write_all(self._targets[read_end], data)
        finally:
            for read_end, target in self._targets.items():
                os.close(read_end)
                os.close(target)

    def finish(self, timeout: float) -> None:
        self._finishing.set()
        self.join(timeout)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
