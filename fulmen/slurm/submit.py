"""The SLURM backend: ``launch --cluster slurm ...`` -> checks -> run dir -> snapshot -> submitit.

``run(spec, dry_run=..., wait=...) -> int`` is the backend function the CLI calls
(docs/internals.md, "CLI <-> backends"). ``submit_task`` is shared with the Python API
(``fulmen.launcher.api``), which submits callables instead of scripts.

Order of work, so that wrong input fails before anything is created or queued:
1. spec checks that need no cluster (script exists, ranks per node for multi-node jobs);
2. ``--dry-run``: print the sbatch script and the command, stop;
3. partition / node-count checks against the controller;
4. run directory (``spec.json``), code snapshot, submitit submission, job record (``job.json``);
5. with ``--wait``: stream rank 0's log until the job ends; the exit code follows the job.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from fulmen.errors import LaunchError, MissingExtraError
from fulmen.launcher.spec import JobSpec
from fulmen.slurm import commands, validation
from fulmen.slurm.rank_entry import ScriptTask
from fulmen.slurm.sbatch import executor_parameters, render_sbatch, submitit_folder

POLL_INTERVAL_S = 1.0


def run(spec: JobSpec, *, dry_run: bool = False, wait: bool = False) -> int:
    """Submit ``spec`` as a SLURM job (or print it with ``dry_run``); the CLI's exit code."""
    validation.check_spec(spec)
    run_dir = resolve_run_dir(spec)
    if dry_run:
        print(dry_run_text(spec, run_dir), end="")
        return 0
    validation.check_against_cluster(spec)
    spec = dataclasses.replace(spec, run_dir=str(run_dir))
    from fulmen.launcher.rundir import prepare_run_dir
    from fulmen.launcher.snapshot import snapshot_code

    prepare_run_dir(spec, run_dir)
    snapshot = snapshot_code(spec.entry, run_dir, entry_is_module=spec.entry_is_module)
    task = ScriptTask(
        run_dir=str(run_dir),
        entry=snapshot.entry,
        args=spec.args,
        entry_is_module=spec.entry_is_module,
        warning_signal=spec.slurm.signal,
        requeue_on_failure=spec.slurm.requeue_on_failure,
        env=task_environment(spec),
    )
    job_id = submit_task(spec, run_dir, task)
    print(
        f"Submitted SLURM job {job_id} ({spec.nodes} node(s) x {spec.ranks_per_node} rank(s)); run dir {run_dir}\n"
        f"  fulmen status {job_id}   fulmen logs {job_id} --rank N   fulmen cancel {job_id}",
        flush=True,
    )
    if not wait:
        return 0
    return wait_for_job(job_id, run_dir)


def task_environment(spec: JobSpec) -> tuple[tuple[str, str], ...]:
    """Variables every task sets: ``--env`` pairs plus explicit ``--master-addr/--master-port``."""
    env = list(spec.env)
    if spec.master_addr:
        env.append(("MASTER_ADDR", spec.master_addr))
    if spec.master_port:
        env.append(("MASTER_PORT", str(spec.master_port)))
    return tuple(env)


def resolve_run_dir(spec: JobSpec) -> Path:
    """``--run-dir`` if given, else a new folder under the run root."""
    from fulmen.launcher.rundir import new_run_id, run_dir_for

    return run_dir_for(spec, new_run_id())


def dry_run_text(spec: JobSpec, run_dir: Path) -> str:
    """What ``--dry-run`` prints: the sbatch script, the submit command and what each task runs."""
    script = render_sbatch(spec, run_dir)
    entry = ("-m " if spec.entry_is_module else "") + spec.entry
    return (
        script
        + "\n# submit command: sbatch <the script above>"
        + f" (written to {submitit_folder(run_dir)}/<job id>_submission.sh)\n"
        + f"# each of the {spec.world_size} task(s) runs, from the code snapshot {run_dir / 'code'}: "
        + " ".join([entry, *spec.args])
        + "\n"
    )


def make_executor(spec: JobSpec, run_dir: Path) -> Any:
    """A submitit SlurmExecutor configured from ``spec`` (imports submitit lazily)."""
    try:
        import submitit
    except ImportError as exc:
        raise MissingExtraError("submitit", "slurm", "Submitting to SLURM") from exc
    folder = submitit_folder(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=spec.slurm.max_requeues)
    executor.update_parameters(**executor_parameters(spec))
    return executor


def submit_task(spec: JobSpec, run_dir: Path, task: Any) -> str:
    """Submit ``task`` (run in every SLURM task) and write the job record; returns the job id."""
    from fulmen.launcher.jobs import new_record, write_record

    executor = make_executor(spec, run_dir)
    try:
        job = executor.submit(task)
    except Exception as exc:  # submitit raises FailedJobError / CalledProcessError with sbatch's stderr
        raise LaunchError(f"sbatch refused the job: {exc}\nHINT: check the options with --dry-run.") from exc
    record = new_record(
        job.job_id, "slurm", run_dir, spec.job_name, spec.to_dict(),
        submitit_folder=str(submitit_folder(run_dir)), num_tasks=spec.world_size,
    )
    write_record(record)
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


def wait_for_job(job_id: str, run_dir: Path, *, rank: int = 0, out: Any = None) -> int:
    """Stream ``logs/rank_N.log`` to ``out`` until the job ends; return its exit code.

    Follows the log across requeues (each run starts a fresh ``rank_N.log``).
    """
    from fulmen.launcher.rundir import rank_log_path

    stream = sys.stdout if out is None else out
    follower = LogFollower(rank_log_path(run_dir, rank))
    while True:
        follower.pump(stream)
        ended = job_has_ended(job_id)
        if ended is not None:
            time.sleep(0.2)  # the last lines may land just after the state changes
            follower.pump(stream)
            follower.close()
            print(f"fulmen: job {job_id} ended: {ended.state} (exit {ended.exit_code})", file=stream, flush=True)
            return exit_code_for(ended)
        time.sleep(POLL_INTERVAL_S)


class LogFollower:
    """``tail -F`` for one file: prints new bytes; switches to a new file when it was rotated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None
        self._inode: int | None = None

    def pump(self, stream: Any) -> None:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._handle is not None:
            self._copy(stream)
            if inode is not None and inode != self._inode:
                self._handle.close()
                self._handle = None
        if self._handle is None and inode is not None:
            # newline="": a progress bar's \r must reach the console as \r (redrawn in place), not as \n.
            self._handle = open(self.path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115 - kept open
            self._inode = inode
            self._copy(stream)

    def _copy(self, stream: Any) -> None:
        data = self._handle.read()
        if data:
            stream.write(data)
            stream.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
