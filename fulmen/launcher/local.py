"""The local backend: N ranks on this machine, or one node of a multi-node group, via
torch.distributed.elastic's agent and process handling (the same machinery as torchrun).

What fulmen adds on top of the agent, and why:

- a run directory (``spec.json``, ``logs/rank_N.log``, ``checkpoints/``) that every rank finds
  through ``FULMEN_RUN_DIR``, and ``FULMEN_RESTART_COUNT`` for the attempt number;
- fast failure propagation: the agent would wait up to 30 s for survivors after a rank dies;
  here they get SIGTERM and, 2 s later, SIGKILL (a survivor is usually stuck in a collective
  with the dead peer and cannot stop by itself);
- preemption: ranks that exit with ``PREEMPTED_EXIT_CODE`` are given time to finish, signals
  to the launcher (TERM/INT/USR1/USR2) are forwarded to the ranks, which checkpoint and exit,
  and the launcher then exits with ``PREEMPTED_EXIT_CODE`` too;
- the console shows rank 0's output unchanged, byte for byte, and the errors of every other
  rank (all of each rank's output is in ``logs/rank_N.log``);
- psutil cleanup of every process of the run (DataLoader workers included) and a one-line
  resource summary per rank; a failure report naming the first failing rank, its exit code
  and the tail of its log.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fulmen.errors import LaunchError
from fulmen.jobs import ports, records, rundir
from fulmen.jobs.backend import JobDescription, Submitted
from fulmen.jobs.exit_codes import final_state_for
from fulmen.jobs.hang import HANG_TIMEOUT_VARIABLE, HANG_WATCHER_VARIABLE
from fulmen.jobs.logs import rank_log_text
from fulmen.jobs.records import JobRecord, launcher_lost
from fulmen.jobs.rundir import NewRun
from fulmen.jobs.spec import SECRET_NAME, JobSpec, ranks_see
from fulmen.launcher.console import tolerate_closed_console

FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2"
RANK_ENTRY_MODULE = "fulmen.launcher.rank_entry"


@dataclass(frozen=True)
class LocalRequest:
    """A local run, decided: the spec, its new run directory and what each rank runs."""

    spec: JobSpec
    run: NewRun

    def render(self) -> str:
        """What ``--dry-run`` prints: ranks, rendezvous, run dir and the exact rank command."""
        return describe_plan(self.spec, self.run.run_dir)


class LocalBackend:
    """Ranks on this machine; ``submit`` runs them to the end (a local run always waits)."""

    def __init__(self, name: str = "local") -> None:
        self.name = name

    def dryrun(self, spec: JobSpec) -> LocalRequest:
        check_entry(spec)
        check_gpus(spec)
        check_cpu_ranks(spec)
        check_nodes(spec)
        return LocalRequest(spec, rundir.new_run(spec))

    def submit(self, request: LocalRequest) -> Submitted:
        code = _run_ranks(request.spec, request.run)
        return Submitted(request.run.run_id, request.run.run_dir, exit_code=code)

    def wait(self, submitted: Submitted) -> int:
        return 0 if submitted.exit_code is None else submitted.exit_code

    def describe(self, record: JobRecord) -> JobDescription:
        # The launcher records the state itself (it is the process that saw the job end),
        # unless it was killed before it could: then the run is LOST.
        state = str(record.extra.get("final_state", "UNKNOWN"))
        if state == "RUNNING" and launcher_lost(record):
            state = "LOST"
        return JobDescription(state)

    def cancel(self, record: JobRecord) -> None:
        raise LaunchError(
            f"job {record.job_id} runs on the {record.backend!r} backend, which has no cancel command; "
            "stop its launcher (Ctrl-C for local runs)."
        )

    def logs(self, record: JobRecord, *, rank: int, follow: bool) -> Iterator[str]:
        return rank_log_text(Path(record.run_dir), rank)


def _run_ranks(spec: JobSpec, run: NewRun) -> int:
    """Start the agent for ``spec`` in the run directory; the ranks' exit code."""
    run.create()
    from fulmen.launcher.local_agent import run_agent  # imports torch: only when we really run

    run_id, run_dir = run.run_id, run.run_dir
    rdzv_id, first_port, claimed = _rendezvous_id_and_port(spec, run_id)
    claimed_ports = [first_port] if claimed else []

    def port_for_attempt(attempt: int) -> int:
        # A restarted group gets a fresh store on a fresh port (see PerAttemptRendezvous).
        if attempt == 0:
            return first_port
        if spec.nodes > 1:
            # Every node must arrive at the same port without talking to the others.
            return first_port + attempt
        port, _ = ports.choose_port(f"{run_id}-attempt-{attempt}", environ={})
        claimed_ports.append(port)
        return port

    record = _write_job_record(run)
    code = 1
    try:
        with _launcher_environment(spec, run_dir), tolerate_closed_console():
            code = run_agent(
                spec,
                run_dir=run_dir,
                rdzv_id=rdzv_id,
                master_addr=spec.master_addr or "127.0.0.1",
                port_for_attempt=port_for_attempt,
                command=rank_command(spec),
            )
        return code
    finally:
        for port in claimed_ports:
            ports.release_port(port)
        _finish_job_record(record, code)


def relaunch_main_script(ranks: int, *, gpus: bool) -> int:
    """Run the current ``python script.py ARGS`` again as ``ranks`` ranks; their exit code.

    What ``Trainer(devices=N)`` does in a process that no launcher started: this process
    becomes the launcher (the same local backend as ``launch --nproc-per-node N``), so the
    ranks run exactly as under ``launch`` and the code before ``fit`` runs in each of them.
    """
    main = sys.modules.get("__main__")
    main_spec = getattr(main, "__spec__", None)
    if main_spec is not None and main_spec.name:
        name = main_spec.name.removesuffix(".__main__")
        entry, is_module = name, True
    elif getattr(main, "__file__", None):
        entry, is_module = os.path.abspath(main.__file__), False  # type: ignore[union-attr]
    else:
        raise LaunchError(
            f"Trainer(devices={ranks}) needs to start {ranks} processes, but this interpreter runs no script "
            "(interactive session or python -c).\n"
            f"HINT: put the code in a file and run `launch --nproc-per-node {ranks} train.py`."
        )
    spec = JobSpec(
        entry=entry,
        args=tuple(sys.argv[1:]),
        entry_is_module=is_module,
        gpus_per_node=ranks if gpus else None,
        nproc_per_node=None if gpus else ranks,
        run_dir=os.environ.get("FULMEN_RUN_DIR") or None,
        force=True,  # Trainer(devices=N) on CPU starts N ranks whatever the CPUs, as Lightning does
    )
    print(f"fulmen: Trainer(devices={ranks}): starting {ranks} ranks with the local launcher; "
          "this process exits with their exit code.", file=sys.stderr, flush=True)
    backend = LocalBackend()
    return int(backend.submit(backend.dryrun(spec)).exit_code or 0)


def check_entry(spec: JobSpec) -> None:
    """A missing script or module is an error before anything starts."""
    if spec.entry_is_module:
        try:
            found = importlib.util.find_spec(spec.entry) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise LaunchError(
                f"-m {spec.entry}: no such module on the Python path of {sys.executable}.\n"
                "HINT: run from the folder that contains the package, or install it."
            )
        return
    path = Path(spec.entry)
    if not path.is_file():
        where = f" (looked in {Path.cwd()})" if not path.is_absolute() else ""
        raise LaunchError(
            f"Script {spec.entry!r} does not exist{where}.\n"
            "HINT: give the path of a Python file, or -m package.module for a module."
        )


def check_gpus(spec: JobSpec) -> None:
    """``--gpus N`` needs N visible GPUs on this machine."""
    if spec.gpus_per_node is None:
        return
    import torch

    found = torch.cuda.device_count()
    if found < spec.gpus_per_node:
        raise LaunchError(
            f"--gpus {spec.gpus_per_node} asks for {spec.gpus_per_node} GPU ranks per node, but "
            f"this machine has {found} GPU{'s' if found != 1 else ''} visible (torch.cuda.device_count()).\n"
            f"HINT: use --nproc-per-node {spec.gpus_per_node} to run {spec.gpus_per_node} ranks on CPU"
            + (f", or --gpus {found}" if found else "")
            + "."
        )


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and SLURM narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_cpu_ranks(spec: JobSpec) -> None:
    """``--nproc-per-node N`` starts N processes here: more than the CPUs is refused unless ``--force``.

    A typo (10000 for 100) would otherwise fork until the machine stalls. With ``--gpus`` the
    cap is the GPU count (``check_gpus``).
    """
    cpus = usable_cpus()
    if spec.nproc_per_node is None or spec.force or spec.nproc_per_node <= cpus:
        return
    raise LaunchError(
        f"--nproc-per-node {spec.nproc_per_node} asks for {spec.nproc_per_node} ranks on this machine, but it has "
        f"{cpus} usable CPU{'s' if cpus != 1 else ''} (os.sched_getaffinity).\n"
        f"HINT: use --nproc-per-node {cpus} or fewer, or add --force to oversubscribe the CPUs on purpose."
    )


def rank_command(spec: JobSpec) -> list[str]:
    """The command every rank runs (through the rank entry, which merges stderr into the log)."""
    entry = ["--module", spec.entry] if spec.entry_is_module else [spec.entry]
    return [sys.executable, "-u", "-m", RANK_ENTRY_MODULE, *entry, *spec.args]


def describe_plan(spec: JobSpec, run_dir: Path) -> str:
    """What ``--dry-run`` prints: ranks, rendezvous, run dir and the exact rank command."""
    nodes = f"node {spec.node_rank} of {spec.nodes}" if spec.nodes > 1 else "1 node"
    lines = [
        f"local launch: {spec.ranks_per_node} rank(s) on this machine ({nodes}), world size {spec.world_size}",
        f"run dir:      {run_dir}",
        f"rendezvous:   {spec.master_addr or '127.0.0.1'}:{spec.master_port or '<derived per run, probed>'}",
        f"max restarts: {spec.max_restarts}",
        f"each rank:    {' '.join(rank_command(spec))}",
        f"working dir:  {Path.cwd()} (relative paths in the script resolve here)",
        ranks_see(spec),
    ]
    lines += [f"env:          {key}={'<hidden>' if SECRET_NAME.search(key) else value}" for key, value in spec.env]
    return "\n".join(lines)


def _write_job_record(run: NewRun) -> JobRecord | None:
    """``job.json`` in the run dir, so ``fulmen status / logs / list`` see local runs too.

    A run directory whose record belongs to another backend (a torchx replica, say, runs this
    backend inside the torchx job's run) is left alone: that job owns the record. Returns None
    then. Bookkeeping only: a record that cannot be written (read-only home) costs a warning.
    """
    try:
        existing = records.read_record(run.run_dir)
    except LaunchError:
        existing = None
    if existing is not None and existing.backend != "local":
        return None
    try:
        return run.record(
            run.run_id, "local", num_tasks=run.spec.world_size, final_state="RUNNING",
            launcher_pid=os.getpid(), launcher_host=socket.gethostname(),
        )
    except OSError as exc:
        print(f"fulmen: warning: job record not written ({exc}); `fulmen status` will not list this run.",
              file=sys.stderr)
        return None


def _finish_job_record(record: JobRecord | None, code: int) -> None:
    if record is None:  # the run belongs to another backend's job, or its record could not be written
        return
    record.extra["final_state"] = final_state_for(code)
    record.extra["exit_code"] = code
    try:
        records.write_record(record)
    except OSError:
        pass  # already warned at the start


def check_nodes(spec: JobSpec) -> None:
    """Settings that cannot work across machines, refused before anything is created.

    ``--max-restarts`` across nodes works because a failure anywhere fails every rank (their
    collectives break), so each node's launcher restarts once per failure and attempt ``k``
    meets at ``master_port + k`` on node 0.
    """
    if spec.nodes == 1:
        return
    if not spec.master_addr:
        raise LaunchError(
            f"--nodes {spec.nodes} without --master-addr: the nodes cannot find each other.\n"
            "HINT: pass --master-addr HOST (node 0's address) and the same --master-port on every node."
        )


def _rendezvous_id_and_port(spec: JobSpec, run_id: str) -> tuple[str, int, bool]:
    """(rendezvous id, port, whether we claimed the port and must release it).

    One node: a fresh id and a probed, claimed port. Several nodes: every node's launcher
    must arrive at the same id and port without talking to the others, so both derive from
    the job name (or come from --master-port / MASTER_PORT); probing here would be
    meaningless, the port is bound on node 0.
    """
    environ = {**os.environ, **dict(spec.env)}
    if spec.nodes == 1:
        port, claimed = ports.choose_port(run_id, explicit=spec.master_port, environ=environ)
        return run_id, port, claimed
    rdzv_id = f"fulmen-{spec.job_name}"
    explicit = spec.master_port
    if explicit is None and environ.get("MASTER_PORT"):
        explicit = int(environ["MASTER_PORT"])
    return rdzv_id, explicit if explicit is not None else ports.candidate_port(rdzv_id), False


@contextmanager
def _launcher_environment(spec: JobSpec, run_dir: Path) -> Iterator[None]:
    """Variables the ranks inherit from the agent, set for the run and restored afterwards.

    The agent passes the launcher's environment to every rank; these are the ones it does
    not set itself. Signal handlers installed by the agent are restored too, because
    ``python script.py`` with ``Trainer(devices=2)`` runs this inside the user's process.
    """
    saved = dict(os.environ)
    handlers = {sig: signal.getsignal(sig) for sig in _signals(FORWARDED_SIGNALS)}
    elastic_logger = logging.getLogger("torch.distributed.elastic")
    level = elastic_logger.level
    os.environ.update(dict(spec.env))
    os.environ["FULMEN_RUN_DIR"] = str(run_dir)
    os.environ[HANG_TIMEOUT_VARIABLE] = str(spec.hang_timeout)  # the ranks report progress ...
    os.environ[HANG_WATCHER_VARIABLE] = "launcher"  # ... and the agent watches it
    os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = FORWARDED_SIGNALS
    if spec.ranks_per_node > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does: N ranks share the cores
    # A launcher started from inside a rank must not leak its own place; and the ranks we start
    # are found through the variables the agent sets, whatever FULMEN_CLUSTER said out here
    # (FULMEN_CLUSTER=single would make each rank start ranks of its own).
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_PORT", "FULMEN_CLUSTER"):
        os.environ.pop(name, None)
    if not os.environ.get("FULMEN_DEBUG"):
        elastic_logger.setLevel(logging.CRITICAL)  # we print our own, shorter, report
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        elastic_logger.setLevel(level)


def _signals(names: str) -> list[signal.Signals]:
    return [getattr(signal, n) for n in names.split(",") if hasattr(signal, n)]


__all__ = ["LocalBackend", "LocalRequest", "check_cpu_ranks", "check_entry", "check_gpus", "describe_plan", "rank_command"]
