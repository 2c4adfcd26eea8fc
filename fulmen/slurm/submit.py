"""The SLURM backend: ``launch --cluster slurm ...`` -> checks -> run dir -> snapshot -> submitit.

``SlurmBackend`` implements the backend protocol (``fulmen.jobs.backend``); the Python API
(``fulmen.launcher.api``) submits callables through the same request, with a task of its own.

Order of work, so that wrong input fails before anything is created or queued:
1. spec checks that need no cluster (script exists, ranks per node for multi-node jobs);
2. ``dryrun``: render the sbatch script (``--dry-run`` prints it; ``submit`` sends the same text);
3. partition / node-count checks against the controller;
4. run directory (``spec.json``), code snapshot, submitit submission, job record (``job.json``);
5. with ``--wait``: copy rank 0's stdout and stderr to ours until the job ends; the exit code
   follows the job. The launcher's own lines (``Submitted SLURM job ...``) go to stderr, so
   stdout is the script's alone.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fulmen.errors import LaunchError, MissingExtraError
from fulmen.jobs.backend import JobDescription, Submitted
from fulmen.jobs.hang import HANG_TIMEOUT_VARIABLE
from fulmen.jobs.logs import LogFollower, earlier_attempts_text, rank_log_text
from fulmen.jobs.records import JobRecord
from fulmen.jobs.rundir import NewRun, new_run, private_files, rank_log_path
from fulmen.jobs.snapshot import snapshot_code
from fulmen.jobs.spec import JobSpec, ranks_see
from fulmen.slurm import commands, validation
from fulmen.slurm.rank_entry import ScriptTask
from fulmen.slurm.sbatch import executor_parameters, render_sbatch, submitit_folder
from fulmen.slurm.task_output import console_stream_path

POLL_INTERVAL_S = 1.0


@dataclasses.dataclass(frozen=True)
class SlurmRequest:
    """A SLURM job, decided: the sbatch script that is printed by ``--dry-run`` and submitted.

    ``task`` is what every SLURM task runs; None means the spec's script from the code
    snapshot (made at submission). The Python API (``fulmen.launcher.api``) sets a callable.
    """

    spec: JobSpec
    run: NewRun
    script: str
    task: Any = None

    def render(self) -> str:
        """The sbatch script, the submit command and what each task runs."""
        spec, run_dir = self.spec, self.run.run_dir
        entry = ("-m " if spec.entry_is_module else "") + spec.entry
        what = " ".join([entry, *spec.args]) if self.task is None else repr(self.task)
        return (
            self.script
            + "\n# submit command: sbatch <the script above>"
            + f" (written to {submitit_folder(run_dir)}/<job id>_submission.sh)\n"
            + f"# each of the {spec.world_size} task(s) runs, in {Path.cwd()} (where launch was called; relative "
            + f"paths resolve here), the code snapshot's {entry} from {run_dir / 'code'}: "
            + what
            + f"\n# {ranks_see(spec)}\n"
        )


class SlurmBackend:
    """``--cluster slurm``: submitit submits the request's sbatch script; SLURM runs the job."""

    def __init__(self, name: str = "slurm") -> None:
        self.name = name

    def dryrun(self, spec: JobSpec) -> SlurmRequest:
        """Checks that need no cluster, then the script; SLURM is not asked (works anywhere)."""
        validation.check_spec(spec)
        run = new_run(spec)
        return SlurmRequest(run.spec, run, render_sbatch(run.spec, run.run_dir))

    def submit(self, request: SlurmRequest) -> Submitted:
        """Check against the controller, create the run dir (and snapshot), submit, record."""
        spec, run = request.spec, request.run
        validation.check_against_cluster(spec)
        run.create()
        task = request.task
        if task is None:
            snapshot = snapshot_code(spec.entry, run.run_dir, entry_is_module=spec.entry_is_module)
            task = ScriptTask(
                run_dir=str(run.run_dir),
                entry=snapshot.entry,
                args=spec.args,
                entry_is_module=spec.entry_is_module,
                warning_signal=spec.slurm.signal,
                requeue_on_failure=spec.slurm.requeue_on_failure,
                env=task_environment(spec),
                workdir=str(Path.cwd()),
            )
        job_id = submit_task(request, task)
        if request.task is None:
            print(
                f"Submitted SLURM job {job_id} ({spec.nodes} node(s) x {spec.ranks_per_node} rank(s)); "
                f"run dir {run.run_dir}\n"
                f"  fulmen status {job_id}   fulmen logs {job_id} --rank N   fulmen cancel {job_id}",
                file=sys.stderr, flush=True,
            )
        return Submitted(job_id, run.run_dir)

    def wait(self, submitted: Submitted) -> int:
        return wait_for_job(submitted.job_id, submitted.run_dir)

    def describe(self, record: JobRecord) -> JobDescription:
        state = commands.job_state(record.job_id)
        details = (
            ("exit code", state.exit_code or ""),
            ("restarts", "" if state.restarts is None else str(state.restarts)),
            ("nodes", state.nodelist or ""),
            ("elapsed", state.elapsed or ""),
        )
        return JobDescription(state.state, state.source, tuple((k, v) for k, v in details if v))

    def cancel(self, record: JobRecord) -> None:
        commands.cancel(record.job_id)

    def logs(self, record: JobRecord, *, rank: int, follow: bool) -> Iterator[str]:
        run_dir = Path(record.run_dir)
        if not follow:
            return rank_log_text(run_dir, rank)
        return itertools.chain(earlier_attempts_text(run_dir, rank), follow_job(record.job_id, run_dir, rank=rank))


def task_environment(spec: JobSpec) -> tuple[tuple[str, str], ...]:
    """Variables every task sets: ``--env`` pairs, explicit ``--master-addr/--master-port``, and
    ``--hang-timeout`` for the rank-side progress watchdog (no launcher watches SLURM ranks: each
    rank dumps its own stack and exits 124 when it makes no progress; an ``--env`` value wins)."""
    env = list(spec.env)
    if HANG_TIMEOUT_VARIABLE not in dict(env):
        env.insert(0, (HANG_TIMEOUT_VARIABLE, f"{spec.hang_timeout:g}"))
    if spec.master_addr:
        env.append(("MASTER_ADDR", spec.master_addr))
    if spec.master_port:
        env.append(("MASTER_PORT", str(spec.master_port)))
    return tuple(env)


def make_executor(request: SlurmRequest) -> Any:
    """A submitit SlurmExecutor for ``request`` that submits the request's own script.

    submitit would render the sbatch file again from its parameters; here its one hook for
    that (``_make_submission_file_text``) returns ``request.script``, so what ``--dry-run``
    printed is byte for byte what sbatch receives. The parameters are still given, because
    submitit reads the task count from them.
    """
    try:
        import submitit
    except ImportError as exc:
        raise MissingExtraError("submitit", "slurm", "Submitting to SLURM") from exc

    class RequestExecutor(submitit.SlurmExecutor):  # type: ignore[misc]
        def _make_submission_file_text(self, command: str, uid: str) -> str:
            return request.script

    folder = submitit_folder(request.run.run_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    executor = RequestExecutor(folder=folder, max_num_timeout=request.spec.slurm.max_requeues)
    executor.update_parameters(**executor_parameters(request.spec))
    return executor


def submit_task(request: SlurmRequest, task: Any) -> str:
    """Submit ``task`` (run in every SLURM task) and write the job record; returns the job id."""
    executor = make_executor(request)
    try:
        with private_files():  # the pickled task holds the --env values: 0600, like the records
            job = executor.submit(task)
    except Exception as exc:  # submitit raises FailedJobError / CalledProcessError with sbatch's stderr
        raise LaunchError(f"sbatch refused the job: {exc}\nHINT: check the options with --dry-run.") from exc
    request.run.record(
        str(job.job_id), "slurm",
        submitit_folder=str(submitit_folder(request.run.run_dir)), num_tasks=request.spec.world_size,
    )
    return str(job.job_id)


# ---------------------------------------------------------------- --wait


def job_has_ended(job_id: str) -> commands.JobState | None:
    """The final state once the job is over for good, else None (queued, running, requeued)."""
    state = commands.job_state(job_id)
    if not state.is_final:
        return None
    live = commands.squeue_state(job_id)  # sacct may say PREEMPTED while the job is queued again
    return state if live is None or live.is_final else None


def exit_code_for(state: commands.JobState) -> int:
    """0 for COMPLETED; the job's exit status when it has one, else 1."""
    if state.state == "COMPLETED":
        return 0
    code = (state.exit_code or "").split(":")[0]
    return int(code) if code.isdigit() and int(code) != 0 else 1


def follow_job(job_id: str, run_dir: Path, *, rank: int = 0) -> Generator[str, None, int]:
    """Rank ``rank``'s log as it grows, until the job ends; returns the job's exit code.

    Follows the log across requeues (each run starts a fresh ``rank_N.log``); the last chunk
    says how the job ended.
    """
    follower = LogFollower(rank_log_path(run_dir, rank))
    chunks = io.StringIO()

    def new_text() -> str:
        follower.pump(chunks)
        text = chunks.getvalue()
        chunks.seek(0)
        chunks.truncate()
        return text

    try:
        while True:
            if text := new_text():
                yield text
            ended = job_has_ended(job_id)
            if ended is not None:
                time.sleep(0.2)  # the last lines may land just after the state changes
                yield new_text() + f"fulmen: job {job_id} ended: {ended.state} (exit {ended.exit_code})\n"
                return exit_code_for(ended)
            time.sleep(POLL_INTERVAL_S)
    finally:
        follower.close()


def wait_for_job(job_id: str, run_dir: Path, *, out: BinaryIO | None = None, err: BinaryIO | None = None) -> int:
    """Copy rank 0's stdout and stderr, byte for byte, to ours until the job ends; its exit code.

    The files are rank 0's streams alone (``fulmen.slurm.task_output``), so the console shows
    what the script printed and nothing of fulmen's or submitit's. A job that did not complete
    gets one ``fulmen: job ... ended`` line on stderr, on a line of its own.
    """
    streams = ConsoleStreams(run_dir, job_id, out or sys.stdout.buffer, err or sys.stderr.buffer)
    while True:
        streams.pump()
        ended = job_has_ended(job_id)
        if ended is not None:
            time.sleep(0.2)  # the last bytes may land just after the state changes
            streams.pump()
            if ended.state != "COMPLETED":
                streams.note(f"fulmen: job {job_id} ended: {ended.state} (exit {ended.exit_code})")
            return exit_code_for(ended)
        time.sleep(POLL_INTERVAL_S)


class ConsoleStreams:
    """Rank 0's ``.stdout`` / ``.stderr`` files of one job, copied as they grow to two byte streams."""

    def __init__(self, run_dir: Path, job_id: str, out: BinaryIO, err: BinaryIO) -> None:
        self._copies = [
            [console_stream_path(run_dir, job_id, "stdout"), out, 0],
            [console_stream_path(run_dir, job_id, "stderr"), err, 0],
        ]
        self._err = err
        self._mid_line = False

    def pump(self) -> None:
        """Copy what each file gained since the last call."""
        for copy in self._copies:
            path, stream, offset = copy
            try:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except FileNotFoundError:
                continue  # not started yet
            if data:
                copy[2] = offset + len(data)
                self._mid_line = not data.endswith((b"\n", b"\r"))
                _write_flushed(stream, data)

    def note(self, line: str) -> None:
        """One line of the launcher's on stderr, starting a new line if the script left one open."""
        _write_flushed(self._err, (b"\n" if self._mid_line else b"") + line.encode() + b"\n")
        self._mid_line = False


def _write_flushed(stream: BinaryIO, data: bytes) -> None:
    try:
        stream.write(data)
        stream.flush()
    except (BrokenPipeError, ValueError):
        pass  # the console went away (`| head`); the run's files keep everything
