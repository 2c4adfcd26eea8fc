"""The elastic agent as fulmen runs it: LocalElasticAgent plus fast failure handling, preemption,
log files in the run directory, process-tree cleanup and the end-of-run report.

Kept apart from ``local.py`` because it imports torch; the CLI's parsing and ``--dry-run``
must not pay for that.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.distributed.elastic.agent.server.api import RunResult, WorkerGroup, WorkerSpec, WorkerState
from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent
from torch.distributed.elastic.multiprocessing import LogsDest, LogsSpecs, SignalException

from fulmen.jobs import events, rundir
from fulmen.jobs.exit_codes import (
    CONFIGURATION_ERROR_EXIT_CODE,
    HANG_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    RENDEZVOUS_TIMEOUT_EXIT_CODE,
)
from fulmen.jobs.hang import DEFAULT_HANG_TIMEOUT_S
from fulmen.jobs.rundir import RESTART_COUNT_VARIABLE
from fulmen.jobs.spec import JobSpec
from fulmen.launcher.console import Console, ConsoleRank, ErrorTail
from fulmen.launcher.hang_watch import Hang, HangWatch
from fulmen.launcher.process_tree import ExitClock, ProcessTreeMonitor, stop_ranks
from fulmen.launcher.rendezvous import PerAttemptRendezvous, RendezvousTimeoutError

KILL_GRACE_S = 2.0  # survivors of a crashed rank: SIGTERM, then SIGKILL after this
PREEMPT_GRACE_S = 120.0  # ranks that exit 75 first: how long the others get to finish saving
CONFIG_GRACE_S = 5.0  # ranks that exit 78 first: how long the others get to print the same message
SHUTDOWN_GRACE_S = 60  # signal to the launcher: how long ranks get to checkpoint and exit


def _grace_for(codes: set[int]) -> float:
    """How long the running ranks may go on after the others exited with ``codes`` (0: stop them now)."""
    if codes == {PREEMPTED_EXIT_CODE}:
        return PREEMPT_GRACE_S
    if codes == {CONFIGURATION_ERROR_EXIT_CODE}:
        return CONFIG_GRACE_S
    return 0.0


class RunDirLogs(LogsSpecs):
    """``logs/rank_N.log`` per rank (previous attempts moved aside); local rank 0 on the console.

    The console rank writes into pipes that the launcher copies unchanged to its own stdout and
    stderr and into the log (``console.ConsoleRank``); the others write into their log files,
    stderr and stdout together (the rank entry joins them).
    """

    def __init__(
        self, run_dir: Path, console: Console | None = None, console_local_ranks: frozenset[int] = frozenset({0})
    ) -> None:
        super().__init__(log_dir=str(run_dir / "logs"))
        self._run_dir = run_dir
        self._console = console
        self._console_local_ranks = console_local_ranks
        self.console_ranks: list[ConsoleRank] = []  # of the latest attempt

    @property
    def root_log_dir(self) -> str:
        return str(self._run_dir / "logs")

    def reify(self, envs: dict[int, dict[str, str]]) -> LogsDest:
        dest = LogsDest()
        self.console_ranks = []
        for local_rank, env in envs.items():
            rank = int(env["RANK"])
            path = rundir.rotate_rank_log(self._run_dir, rank)
            dest.error_files[local_rank] = "/dev/null"
            if local_rank in self._console_local_ranks:
                console = self._console or Console()
                shown = ConsoleRank(console, path, prefix="" if rank == 0 else f"[rank{rank}]:")
                self.console_ranks.append(shown)
                dest.stdouts[local_rank], dest.stderrs[local_rank] = shown.stdout_path, shown.stderr_path
            else:
                dest.stdouts[local_rank] = str(path)
                dest.stderrs[local_rank] = ""  # the rank entry sends stderr into the same file
        return dest

    def started(self) -> None:
        """The latest attempt's ranks are running (they hold their pipe ends)."""
        for shown in self.console_ranks:
            shown.started()

    def finish(self) -> None:
        """The latest attempt's ranks are gone: copy the rest of their console output."""
        for shown in self.console_ranks:
            shown.finish()
        self.console_ranks = []


class FulmenAgent(LocalElasticAgent):
    """LocalElasticAgent with fulmen's failure, preemption and bookkeeping rules (module docstring)."""

    def __init__(
        self, spec: WorkerSpec, logs_specs: RunDirLogs, run_dir: Path, console: Console,
        job: JobSpec | None = None, hang_timeout: float = DEFAULT_HANG_TIMEOUT_S,
    ) -> None:  # fmt: skip
        super().__init__(spec, logs_specs, start_method="spawn", shutdown_timeout=SHUTDOWN_GRACE_S)
        self.run_dir = run_dir
        self.job = job  # nodes, ranks and the node rank, for the event log
        self.hang_watch = HangWatch(run_dir, hang_timeout)
        self.hang: Hang | None = None  # of the latest attempt
        self.logs = logs_specs
        self.console = console
        self.monitor = ProcessTreeMonitor()
        self.first_failure: tuple[int, int, int] | None = None  # (global rank, pid, exit code)
        self.shown_on_console: set[int] = set()  # global ranks whose output or errors the console showed
        self._rank_of_local: dict[int, int] = {}
        self._preempted_since: float | None = None
        self._exit_clock = ExitClock()
        self._error_tail: ErrorTail | None = None
        self.late_signals: list[signal.Signals] = []  # arrived while the ranks were being stopped or were done

    def _start_workers(self, worker_group: WorkerGroup) -> dict[int, Any]:
        restart = worker_group.spec.max_restarts - self._remaining_restarts
        os.environ[RESTART_COUNT_VARIABLE] = str(restart)  # the ranks inherit the agent's environment
        pids = super()._start_workers(worker_group)
        self.logs.started()
        self._rank_of_local = {w.local_rank: w.global_rank for w in worker_group.workers}
        self.monitor.track({self._rank_of_local[lr]: pid for lr, pid in pids.items()})
        self._exit_clock = ExitClock()
        for local_rank, pid in pids.items():
            self._exit_clock.watch(local_rank, pid)
        self.first_failure = None
        self._preempted_since = None
        self.hang = None
        self.hang_watch.reset(list(self._rank_of_local.values()))
        self.shown_on_console = {w.global_rank for w in worker_group.workers if w.local_rank == 0}
        self._start_error_tail(worker_group)
        job = self.job
        self.note("started", attempt=restart, max_restarts=worker_group.spec.max_restarts, job_id=worker_group.spec.rdzv_handler.get_run_id(),
                  nodes=job.nodes if job else 1, ranks=job.world_size if job else len(pids))
        return pids

    def note(self, event: str, **fields: Any) -> None:
        """Append a job-wide event to the run's event log: node 0's launcher is its one writer."""
        if self.job is None or self.job.node_rank == 0:
            events.append_event(self.run_dir, event, **fields)

    def note_failure(self, exit_code: int) -> None:
        """The ``failed`` event of the attempt that just ended: first failing rank, exit code, its log."""
        if self.first_failure is not None:
            rank, _, code = self.first_failure
            log = rundir.rank_log_path(self.run_dir, rank)
            self.note("failed", rank=rank, exit_code=code, log=str(log), launcher_exit_code=exit_code)
        else:
            self.note("failed", rank=None, exit_code=exit_code, log=None)

    def _start_error_tail(self, worker_group: WorkerGroup) -> None:
        """Show other ranks' errors on the console as they happen (the console rank is shown in full)."""
        self._stop_error_tail()
        others = [w for w in worker_group.workers if w.local_rank != 0]
        if others:
            logs = {w.global_rank: rundir.rank_log_path(self.run_dir, w.global_rank) for w in others}
            self._error_tail = ErrorTail(self.console, logs)
            self._error_tail.start()

    def _stop_error_tail(self) -> None:
        if self._error_tail is not None:
            self._error_tail.stop()
            self.shown_on_console |= self._error_tail.shown
            self._error_tail = None

    def _shutdown(self, death_sig: signal.Signals = signal.SIGTERM, timeout: int = 30) -> None:
        # From here on the ranks are being stopped (a signal came) or are done (the run ended):
        # a further signal must neither abort the grace the ranks get to save their resume
        # checkpoint nor turn a finished run into a failure. torch's handlers raise
        # SignalException wherever the launcher happens to be; these only note the signal.
        # (torch's own handlers come back with the next attempt's start_processes.)
        for sig in _signals_to_hold():
            signal.signal(sig, self._note_late_signal)
        # Our stop first: the signal to each rank, not its process group (process_tree.stop_ranks);
        # torch's close would signal the group and kill the ranks' DataLoader workers under them.
        handlers = self._pcontext.subprocess_handlers if self._pcontext else {}
        stop_ranks([h.proc for h in handlers.values()], grace=timeout, sig=death_sig)
        super()._shutdown(death_sig, timeout)
        # After the processes are gone, so their last bytes are read; the console rank first,
        # so errors held back for its unfinished line come out after it.
        self.logs.finish()
        self._stop_error_tail()

    def _note_late_signal(self, signum: int, frame: Any) -> None:
        self.late_signals.append(signal.Signals(signum))

    def _monitor_workers(self, worker_group: WorkerGroup) -> RunResult:
        self.monitor.sample()
        handlers = self._pcontext.subprocess_handlers if self._pcontext else {}
        codes = {lr: h.proc.poll() for lr, h in handlers.items()}
        failed = {lr: code for lr, code in codes.items() if code not in (None, 0)}
        running = [handlers[lr].proc for lr, code in codes.items() if code is None]
        if not failed and running:
            pids = {self._rank_of_local[lr]: handlers[lr].proc.pid for lr, code in codes.items() if code is None}
            hang = self.hang_watch.check(pids)
            if hang is not None:
                self._stop_hung_job(hang, running)
                return super()._monitor_workers(worker_group)
        if failed:
            self._note_first_failure(failed, handlers)
        if failed and running:
            grace = _grace_for(set(failed.values()))
            if grace:
                self._preempted_since = self._preempted_since or time.monotonic()
                if time.monotonic() - self._preempted_since < grace:
                    # the others are saving (75), or about to print the configuration error that
                    # local rank 0 owns (78): stopping them now would lose that
                    return RunResult(state=WorkerState.HEALTHY)
            stop_ranks(running, grace=KILL_GRACE_S)
        return super()._monitor_workers(worker_group)

    def _stop_hung_job(self, hang: Hang, running: list[Any]) -> None:
        """Name the stuck rank and where it is, then stop every rank (it cannot save: it is stuck)."""
        self.hang = hang
        self.first_failure = (hang.rank, hang.pid, HANG_EXIT_CODE)
        _say(hang.describe())
        _say(f"stopping the ranks (exit code {HANG_EXIT_CODE}); --hang-timeout sets how long no progress is tolerated.")
        stop_ranks(running, grace=KILL_GRACE_S)

    def _note_first_failure(self, failed: dict[int, int], handlers: dict[int, Any]) -> None:
        if self.first_failure is not None:
            return
        exited_at = self._exit_clock.exited_at
        local_rank = min(failed, key=lambda lr: (exited_at.get(lr, float("inf")), lr))
        self.first_failure = (self._rank_of_local[local_rank], handlers[local_rank].proc.pid, failed[local_rank])
        if failed[local_rank] == CONFIGURATION_ERROR_EXIT_CODE:
            self._remaining_restarts = 0  # the same script and launch would fail the same way again

    def _restart_workers(self, worker_group: WorkerGroup) -> None:
        if self.first_failure is not None:
            rank, pid, code = self.first_failure
            used = worker_group.spec.max_restarts - self._remaining_restarts
            _say(
                f"rank {rank} (pid {pid}) exited with {describe_exit(code)}; restarting all ranks "
                f"(restart {used} of {worker_group.spec.max_restarts})"
            )
            if code != PREEMPTED_EXIT_CODE:  # a preempted attempt's rank 0 logged its own stop
                self.note_failure(code)
            self.note("restarted", by="launcher", count=used, limit=worker_group.spec.max_restarts)
        super()._restart_workers(worker_group)

    def final_exit_codes(self) -> dict[int, int | None]:
        """Global rank -> exit code of the last attempt (None: never started or still running)."""
        handlers = self._pcontext.subprocess_handlers if self._pcontext else {}
        return {self._rank_of_local[lr]: h.proc.poll() for lr, h in handlers.items()}


def run_agent(
    spec: JobSpec,
    *,
    run_dir: Path,
    rdzv_id: str,
    master_addr: str,
    port_for_attempt: Callable[[int], int],
    command: list[str],
) -> int:
    """Start the ranks of this node and supervise them to the end; returns the exit code.

    ``port_for_attempt(k)`` gives the rendezvous port of attempt ``k`` (0 = first start).
    """
    worker_spec = WorkerSpec(
        role="rank",
        local_world_size=spec.ranks_per_node,
        entrypoint=command[0],
        args=tuple(command[1:]),
        rdzv_handler=PerAttemptRendezvous(
            master_addr, port_for_attempt, spec.node_rank, spec.nodes, rdzv_id, timeout_s=spec.rdzv_timeout, say=_say
        ),
        max_restarts=spec.max_restarts,
        monitor_interval=0.1,
    )
    console = Console()
    agent = FulmenAgent(worker_spec, RunDirLogs(run_dir, console), run_dir, console, spec,
                        hang_timeout=spec.hang_timeout)
    _say(f"run dir {run_dir} | {spec.ranks_per_node} rank(s) here, world size {spec.world_size}")
    received: signal.Signals | None = None
    result: RunResult | None = None
    try:
        result = agent.run()
    except RendezvousTimeoutError as exc:
        _say(f"error: {exc}")
        return RENDEZVOUS_TIMEOUT_EXIT_CODE  # no rank started; nothing to report or clean
    except SignalException as exc:
        received = exc.sigval
        # Repeats (a second Ctrl-C, SLURM's TERM after USR1) must not abort the checkpointing.
        for sig in _signals_to_hold():
            signal.signal(sig, signal.SIG_IGN)
        handlers = agent._pcontext.subprocess_handlers if agent._pcontext else {}
        stop_ranks([h.proc for h in handlers.values()], grace=SHUTDOWN_GRACE_S, sig=received)
    finally:
        agent.monitor.kill_all()
        worker_spec.rdzv_handler.shutdown()
    code = _report(agent, result, received, run_dir)
    if code == 0:
        agent.note("finished", exit_code=0)
    elif code != PREEMPTED_EXIT_CODE:  # preempted: rank 0 logged the stop, with its step
        agent.note_failure(code)
    return code


def _report(agent: FulmenAgent, result: RunResult | None, received: signal.Signals | None, run_dir: Path) -> int:
    codes = agent.final_exit_codes()
    for rank, usage in sorted(agent.monitor.usage.items()):
        _say(usage.describe(codes.get(rank)))
    leftovers = agent.monitor.live_processes()
    if leftovers:
        _say(f"WARNING: {len(leftovers)} process(es) of the run survived cleanup: {[p.pid for p in leftovers]}")
    preempted = bool(codes) and all(code == PREEMPTED_EXIT_CODE for code in codes.values())
    finished = bool(codes) and all(code == 0 for code in codes.values())
    if finished and (result is None or not result.is_failed()):
        # every rank completed: a signal that came during the teardown changes nothing
        late = received or (agent.late_signals[0] if agent.late_signals else None)
        if late is not None:
            _say(f"{late.name} received after the ranks had finished; the run completed.")
        return 0
    if received is not None or preempted:
        how = f"{received.name} received" if received is not None else "preempted"
        if preempted:
            _say(f"{how}: ranks saved the resume checkpoint and stopped (exit {PREEMPTED_EXIT_CODE}).")
            _say(f"HINT: relaunch with --run-dir {run_dir} to continue at the exact step.")
            return PREEMPTED_EXIT_CODE
        _say(f"{how}: ranks stopped without a complete resume checkpoint; exit codes {codes}")
        return 128 + int(received) if received is not None else 1
    if result is not None and not result.is_failed():
        return 0
    if agent.first_failure is None:  # agent failed for another reason (e.g. rendezvous)
        _say(f"the run failed; exit codes {codes}")
        return 1
    rank, pid, code = agent.first_failure
    if code == HANG_EXIT_CODE:  # named with its stack location when it was found
        _say(f"rank {rank} (pid {pid}) made no progress (named above, stacks in {run_dir / 'stacks'}); "
             f"the job was stopped with exit code {code}.")  # fmt: skip
        return code
    if code == CONFIGURATION_ERROR_EXIT_CODE:  # local rank 0 printed the message; the log tail would repeat it
        _say(f"the ranks stopped on the configuration error above (exit code {code}).")
        return code
    log = rundir.rank_log_path(run_dir, rank)
    _say(f"rank {rank} (pid {pid}) failed first, with {describe_exit(code)}; the other ranks were stopped.")
    if rank in agent.shown_on_console:
        _say(f"its output is above; all of it is in {log}")  # a traceback is printed once
    else:
        _say(f"last lines of {log}:")
        for line in rundir.tail(log, 20).splitlines():
            print(f"    {line}", file=sys.stderr)
    for other, other_code in sorted(codes.items()):
        # Ranks that failed by themselves (not stopped by us): their last words, one line each.
        if other != rank and other_code is not None and other_code > 0 and other_code != PREEMPTED_EXIT_CODE:
            last = next((ln for ln in reversed(rundir.tail(rundir.rank_log_path(run_dir, other), 5).splitlines())
                         if ln.strip()), "")
            _say(f"rank {other} also failed, with exit code {other_code}: {last.strip()[:200]}")
    return code if 0 < code < 256 else 128 + abs(code)


def _signals_to_hold() -> list[signal.Signals]:
    """The signals torch's agent turns into SignalException (``TORCHELASTIC_SIGNALS_TO_HANDLE``,
    set by ``local.py``) plus those the ranks use for preemption."""
    names = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT").split(",")
    names += ["SIGUSR1", "SIGUSR2"]
    return list(dict.fromkeys(getattr(signal, n.strip()) for n in names if hasattr(signal, n.strip())))


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``signal SIGKILL (exit code -9)``."""
    if code == HANG_EXIT_CODE:
        return f"no progress (hang watchdog, exit code {code})"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            return f"signal {-code} (exit code {code})"
    return f"exit code {code}"


def _say(message: str) -> None:
    print(f"fulmen: {message}", file=sys.stderr, flush=True)
