"""What every SLURM task runs: set up the rank, then run the user's script (or callable).

submitit starts one ``python -m submitit.core._submit`` per task (``srun``), unpickles the
callable we submitted and calls it. That callable is a :class:`ScriptTask` (``launch
script.py``) or a :class:`CallableTask` (``fulmen.launcher.api.submit``). Both:

1. export ``FULMEN_RUN_DIR`` and ``FULMEN_RESTART_COUNT`` (= ``SLURM_RESTART_COUNT``, 0 on the
   first run), ``MASTER_ADDR`` (first host of the step nodelist) and ``MASTER_PORT`` (derived
   from the job id, probed by rank 0 and shared through the run directory);
2. send this rank's stdout and stderr to ``<run_dir>/logs/rank_N.log`` (earlier attempts are
   kept as ``rank_N.attempt_K.log``), and rank 0's also, each alone, to the files ``launch
   --wait`` copies to its console (``fulmen.slurm.task_output``);
3. install a fallback handler for SIGTERM and the warning signal: a signal that arrives
   outside ``Trainer.fit`` (whose own handler takes over during fit and is restored after)
   stops the script, requeues the job from rank 0 and exits with ``PREEMPTED_EXIT_CODE``;
4. run the script from the code snapshot, in the directory ``launch`` was called from (as
   sbatch and submitit do): relative data paths (``data/x.csv``) resolve as they do locally,
   while the code comes from ``<run_dir>/code`` (``sys.path[0]`` and the first ``PYTHONPATH``
   entry), so edits made after submission do not reach a queued or requeued job.

Exit codes: 0 -> submitit records the result; anything else leaves the process with that
code (the SLURM job fails, or, for 75 after a requeue, runs again).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import runpy
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from fulmen.jobs.events import append_event
from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.jobs.hang import register_stack_dump, tidy_rank_files
from fulmen.jobs.rundir import rank_log_path
from fulmen.runtime.ranks import RankInfo
from fulmen.slurm import environment
from fulmen.slurm.task_output import TaskOutput, capture_task_output

PORT_WAIT_S = 120.0
INHERITED_LAUNCH_VARIABLES = (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
    "MASTER_ADDR", "MASTER_PORT", "FULMEN_CLUSTER", "FULMEN_RUN_DIR", "FULMEN_RESTART_COUNT",
    "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS",
    "FULMEN_HANG_TIMEOUT", "FULMEN_HANG_WATCHER",  # a local launcher's watcher would silence the rank's own
)
_SIGNAL_NAMES = {"USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2, "TERM": signal.SIGTERM,
                 "INT": signal.SIGINT, "HUP": signal.SIGHUP, "QUIT": signal.SIGQUIT, "ALRM": signal.SIGALRM}


class SignalStop(BaseException):
    """Raised by the fallback handler; a BaseException so ``except Exception`` cannot eat it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def warning_signal(spec_signal: str) -> signal.Signals:
    """The signal of an sbatch ``--signal`` spec: ``B:USR1@120`` -> SIGUSR1."""
    name = spec_signal.split(":")[-1].split("@")[0].removeprefix("SIG")
    return _SIGNAL_NAMES[name]


# ---------------------------------------------------------------- rank setup


def prepare_rank(
    run_dir: Path, environ: dict[str, str] | None = None, extra_env: tuple[tuple[str, str], ...] = ()
) -> RankInfo | None:
    """Export the run/rendezvous variables for this task and return its RankInfo.

    ``extra_env`` is ``launch --env KEY=VALUE`` (and ``--master-addr/--master-port``), applied
    first so that an explicit ``MASTER_PORT`` wins over the derived one. None when this
    process is not an srun task (then it runs as a single process).
    """
    env = os.environ if environ is None else environ
    # sbatch exports the submitting shell's environment; a rendezvous or rank left there (say,
    # `launch` run from inside a torchrun job) must not override what SLURM says about this task.
    for name in INHERITED_LAUNCH_VARIABLES:
        env.pop(name, None)
    env.update(dict(extra_env))
    env["FULMEN_RUN_DIR"] = str(run_dir)
    env["FULMEN_RESTART_COUNT"] = str(environment.restart_count(env))
    # torchrun's habit: one thread per rank unless the job asked for more CPUs per task,
    # otherwise N ranks x all-cores threads oversubscribe the node.
    env.setdefault("OMP_NUM_THREADS", env.get("SLURM_CPUS_PER_TASK", "1"))
    info = environment.rank_info_from_slurm(env)
    if info is None:
        return None
    env["MASTER_ADDR"] = info.master_addr
    if "MASTER_PORT" not in env and info.world_size > 1:
        env["MASTER_PORT"] = str(agree_on_port(info, run_dir))
    return environment.rank_info_from_slurm(env)


def agree_on_port(info: RankInfo, run_dir: Path) -> int:
    """Rank 0 probes from the derived port upwards; the others read its choice from the run dir."""
    from fulmen.jobs.ports import PORT_RANGE, is_port_free

    folder = run_dir / "rendezvous"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{info.job_id}.restart{info.restart_count}.port"
    assert info.master_port is not None
    if info.is_global_zero:
        port = info.master_port
        low, high = PORT_RANGE
        for _ in range(64):
            if is_port_free(port):
                break
            port = low + (port - low + 1) % (high - low)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, path)
        return port
    deadline = time.monotonic() + PORT_WAIT_S
    while time.monotonic() < deadline:
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise TimeoutError(
        f"rank {info.global_rank} waited {PORT_WAIT_S:.0f}s for rank 0 to publish the rendezvous port in {path}"
    )


def _raise_signal_stop(signum: int, frame: FrameType | None) -> None:
    raise SignalStop(signum)


def install_fallback_handlers(warning: signal.Signals) -> None:
    """SIGTERM and the warning signal stop a script that is not inside ``Trainer.fit``."""
    for sig in {signal.SIGTERM, warning}:
        signal.signal(sig, _raise_signal_stop)


def ignore_late_signals(warning: signal.Signals) -> None:
    """After the script ended, SIGTERM (sent when rank 0 requeued the job) must not raise in
    the requeue call or in interpreter shutdown; the process is leaving anyway, and SIGKILL
    follows KillWait."""
    for sig in {signal.SIGTERM, warning}:
        signal.signal(sig, signal.SIG_IGN)


def _restart_note(info: RankInfo | None) -> str:
    if info is None:
        return "single process (not an srun task)"
    return (
        f"rank {info.global_rank}/{info.world_size} local_rank {info.local_rank} node {info.node_rank} "
        f"({os.environ.get('SLURMD_NODENAME', '?')}) job {info.job_id} restart {info.restart_count} "
        f"master {info.master_addr}:{info.master_port}"
    )


# ---------------------------------------------------------------- running


def run_guarded(
    body: Callable[[], Any], info: RankInfo | None, requeue_on_failure: bool, *, reraise: bool = False
) -> tuple[int, Any]:
    """Run ``body``; map its ending to an exit code, requeueing where the rules say so.

    With ``reraise`` an exception from ``body`` propagates after the requeue decision, so that
    submitit pickles its traceback for the submitter.
    """
    from fulmen.errors import ClusterMismatchError
    from fulmen.jobs.exit_codes import CONFIGURATION_ERROR_EXIT_CODE, PREEMPTED_EXIT_CODE, report_configuration_error
    from fulmen.slurm.requeue import requeue_job

    result: Any = None
    error: Exception | None = None
    try:
        result = body()
        code = 0
    except SignalStop as stop:
        print(f"fulmen: {stop} outside Trainer.fit; stopping this rank", file=sys.stderr, flush=True)
        code = PREEMPTED_EXIT_CODE
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except ClusterMismatchError as exc:  # the same on every rank: one message (rank 0's log), no traceback
        code = report_configuration_error(exc, local_rank=0 if info is None else info.local_rank)
        error = exc if reraise else None
    except Exception as exc:  # noqa: BLE001 - the traceback goes to the rank's log, the code to SLURM
        traceback.print_exc()  # what we re-raise, submitit prints only into its own files
        code, error = 1, exc
    note_ending(info, code)
    if info is not None and code == PREEMPTED_EXIT_CODE and info.is_global_zero:
        requeue_job(info, reason="preempted or near the time limit")
    elif info is not None and code not in (0, PREEMPTED_EXIT_CODE, CONFIGURATION_ERROR_EXIT_CODE) and requeue_on_failure:
        requeue_job(info, reason=f"rank {info.global_rank} failed with exit code {code}")
    sys.stdout.flush()
    sys.stderr.flush()
    if error is not None and reraise:
        raise error
    return code, result


def note_start(info: RankInfo | None) -> None:
    """Global rank 0 logs the attempt's ``started`` event (``fulmen.jobs.events``)."""
    from fulmen.slurm.requeue import max_requeues_for  # as run_guarded imports requeue: on use

    if info is not None and info.is_global_zero:
        append_event(info.run_dir, "started", attempt=info.restart_count, nodes=info.num_nodes, ranks=info.world_size,
                     job_id=info.job_id, array_id=os.environ.get("SLURM_ARRAY_JOB_ID"),
                     max_restarts=max_requeues_for(info.run_dir))


def note_ending(info: RankInfo | None, code: int) -> None:
    """``finished`` from rank 0, ``failed`` from every rank that failed (75: rank 0 logged the stop).

    Each failing rank writes its own line; the first after the attempt's start is the first to fail.
    """
    if info is None or code == PREEMPTED_EXIT_CODE:
        return
    if code == 0:
        if info.is_global_zero:
            append_event(info.run_dir, "finished", exit_code=0, fsync=True)
        return
    log = rank_log_path(Path(info.run_dir), info.global_rank) if info.run_dir else None
    append_event(info.run_dir, "failed", rank=info.global_rank, exit_code=code, log=str(log), fsync=True)


def run_in_task(
    run_dir: Path,
    extra_env: tuple[tuple[str, str], ...],
    warning_spec: str,
    requeue_on_failure: bool,
    body: Callable[[], Any],
    *,
    reraise: bool = False,
) -> tuple[int, Any]:
    """Both task kinds: fallback handlers first, then rank set-up and ``body`` under one guard.

    The handlers replace submitit's before anything slow (rank != 0 may wait for the port), so
    a preemption signal during set-up requeues the job like one during the script would.
    """
    warning = warning_signal(warning_spec)
    install_fallback_handlers(warning)
    try:  # enough to requeue (job id, rank, restart) even if set-up is interrupted
        early = environment.rank_info_from_slurm(os.environ)
    except ValueError:
        early = None
    if early is not None:
        early = dataclasses.replace(early, run_dir=str(run_dir))

    outputs: list[TaskOutput] = []
    tidy_ups: list[Callable[[], None]] = []

    def set_up_then_body() -> Any:
        try:
            info = prepare_rank(run_dir, extra_env=extra_env)
            rank = info.global_rank if info else 0
            register_stack_dump(str(run_dir), rank)  # `scancel --signal=URG JOB` writes every rank's stacks
            tidy_ups.append(functools.partial(tidy_rank_files, str(run_dir), rank))
            output = capture_task_output(run_dir, info.global_rank if info else 0, info.job_id if info else None)
            outputs.append(output)
            output.note(f"fulmen: {_restart_note(info)} started at {time.time():.3f}")
            note_start(info)
            return body()
        finally:
            # From here on only the ending is handled (requeue, exit): the SIGTERM that SLURM
            # sends once the job is requeued must not interrupt that.
            ignore_late_signals(warning)

    try:
        # The ending (a traceback, the requeue) is still written to the rank's output.
        return run_guarded(set_up_then_body, early, requeue_on_failure, reraise=reraise)
    finally:
        ignore_late_signals(warning)
        for tidy in tidy_ups:
            tidy()
        for output in outputs:
            output.close()


@dataclass(frozen=True)
class ScriptTask:
    """Run ``entry`` (a script in the snapshot, or a module) with ``args`` in every task."""

    run_dir: str
    entry: str
    args: tuple[str, ...] = ()
    entry_is_module: bool = False
    warning_signal: str = "USR2@90"
    requeue_on_failure: bool = False
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""  # where `launch` was called; "" (older pickles): the snapshot

    def __call__(self) -> int:
        code, _ = run_in_task(Path(self.run_dir), self.env, self.warning_signal, self.requeue_on_failure,
                              self._run_script)
        if code != 0:
            # SystemExit passes submitit's `except Exception`: no result pickle is written and
            # the task's exit status is what SLURM records.
            raise SystemExit(code)
        return 0

    def _run_script(self) -> None:
        code_dir = Path(self.run_dir) / "code"
        os.chdir(working_directory(self.workdir, code_dir))
        import_from_snapshot(code_dir, os.getcwd())
        if self.entry_is_module:
            sys.argv = [self.entry, *self.args]
            runpy.run_module(self.entry, run_name="__main__", alter_sys=True)
        else:
            script = code_dir / self.entry
            sys.argv = [str(script), *self.args]
            sys.path.insert(0, str(script.parent))
            runpy.run_path(str(script), run_name="__main__")


def working_directory(workdir: str, code_dir: Path) -> Path:
    """Where the script runs: the ``launch`` directory, or the snapshot when that is not here.

    On a cluster without a shared file system the submit directory may not exist on the
    node; the snapshot (which the job needs anyway) is the best remaining choice, and the
    rank's log says so.
    """
    if workdir and Path(workdir).is_dir():
        return Path(workdir)
    if workdir:
        print(f"fulmen: {workdir} (where launch was called) does not exist on this node; running in the "
              f"code snapshot {code_dir}, so relative paths resolve there", file=sys.stderr, flush=True)
    return code_dir


def import_from_snapshot(code_dir: Path, workdir: str) -> None:
    """Make the snapshot, not the working tree, the place the user's modules come from.

    ``python -m submitit.core._submit`` put the job's start directory (the working tree) on
    ``sys.path``; it is replaced by the snapshot, and the snapshot goes first on ``PYTHONPATH``
    for the processes the script starts.
    """
    here = {"", ".", os.path.realpath(workdir)}
    sys.path[:] = [str(code_dir)] + [p for p in sys.path if (os.path.realpath(p) if p else p) not in here]
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(code_dir), *([previous] if previous else [])])


@dataclass(frozen=True)
class CallableTask:
    """Call ``fn(*args, **kwargs)`` in every task; each task's return value is its result."""

    run_dir: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    warning_signal: str = "USR2@90"
    requeue_on_failure: bool = False
    env: tuple[tuple[str, str], ...] = ()

    def __call__(self) -> Any:
        code, result = run_in_task(
            Path(self.run_dir), self.env, self.warning_signal, self.requeue_on_failure,
            lambda: self.fn(*self.args, **self.kwargs), reraise=True,
        )
        if code != 0:
            raise SystemExit(code)
        return result

