"""The torchx backend: ``--cluster k8s`` (Volcano job on Kubernetes) and ``--cluster torchx-local``.

fulmen writes no Kubernetes client of its own: the JobSpec becomes a torchx AppDef
(``torchx_appdef.build_appdef``), and torchx's runner turns it into a request (``dryrun``) and
submits it (``schedule``) to its ``kubernetes`` or ``local_cwd`` scheduler. ``--dry-run`` prints
that request: for Kubernetes, the Volcano ``Job`` resource torchx would create.

torchx and the kubernetes client are optional (``fulmen[torchx]``); they are imported only here,
only when a torchx job is launched or inspected.

``torchx-local`` always waits: torchx's local scheduler supervises the replicas from this process
and stops them when its runner closes, so the launcher stays in the foreground like ``launch``
does. Kubernetes jobs return after submission unless ``wait`` is set.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fulmen.errors import LaunchError, MissingExtraError
from fulmen.jobs import ports, records, rundir
from fulmen.jobs.logs import LogFollower
from fulmen.jobs.spec import JobSpec
from fulmen.launcher import local, torchx_jobs
from fulmen.launcher.torchx_appdef import build_appdef, pod_run_dir, role_name

if TYPE_CHECKING:
    from torchx.runner import Runner
    from torchx.specs import AppDef, AppDryRunInfo

#: torchx scheduler for each fulmen cluster name.
SCHEDULERS = {"k8s": "kubernetes", "torchx-local": "local_cwd"}
#: Seconds between status polls while waiting: local processes are cheap to ask; a Kubernetes
#: API server is shared, and a training job's state changes on the scale of minutes.
POLL_INTERVAL_S = {"local_cwd": 0.5, "kubernetes": 5.0}
#: Exit code of a job that ended in a state other than SUCCEEDED / FAILED (cancelled, unknown).
CANCELLED_EXIT_CODE = 130


def require_torchx(cluster: str) -> None:
    """Import torchx (and, for Kubernetes, its client) or raise ``MissingExtraError``."""
    purpose = f"--cluster {cluster}"
    try:
        import torchx.runner  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("torchx", "torchx", purpose) from exc
    if cluster == "k8s":
        try:
            import kubernetes  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError("kubernetes", "torchx", purpose) from exc


def scheduler_for(spec: JobSpec) -> str:
    """The torchx scheduler that runs ``spec`` (``kubernetes`` or ``local_cwd``)."""
    try:
        return SCHEDULERS[spec.cluster]
    except KeyError:
        raise LaunchError(
            f"--cluster {spec.cluster!r} is not a torchx cluster. Expected one of: "
            f"{', '.join(SCHEDULERS)}.\nHINT: --cluster local and --cluster slurm have their own backends "
            "(fulmen.launcher.local, fulmen.slurm.submit)."
        ) from None


def scheduler_cfg(spec: JobSpec, *, log_dir: str | None = None) -> dict[str, Any]:
    """torchx run options for the spec's scheduler.

    Kubernetes: namespace and Volcano queue (torchx requires a queue; Volcano's is ``default``).
    local_cwd: ``log_dir`` keeps each replica's stdout/stderr under the run directory; with
    ``--gpus``, torchx gives each replica its own ``CUDA_VISIBLE_DEVICES`` slice, as separate
    nodes would have.
    """
    if spec.cluster == "k8s":
        return {"namespace": spec.k8s.namespace, "queue": spec.k8s.queue or "default"}
    cfg: dict[str, Any] = {
        "prepend_cwd": False,
        "auto_set_cuda_visible_devices": spec.gpus_per_node is not None,
    }
    if log_dir is not None:
        cfg["log_dir"] = log_dir
    return cfg


def venv_bin_dir() -> str:
    """Directory of this interpreter's scripts (``launch``, ``torchrun``), first on a local PATH."""
    return str(Path(sys.executable).parent)


def appdef_for(spec: JobSpec, *, run_dir: Path, rendezvous_port: int | None = None) -> AppDef:
    """The AppDef for ``spec``: the image and in-pod run dir for k8s, local paths for torchx-local.

    ``run_dir`` is the local run directory; pods see ``pod_run_dir(spec, run_dir.name)``.
    ``rendezvous_port`` matters only for multi-node torchx-local, whose replicas share this host.
    """
    if spec.cluster == "k8s":
        if not spec.k8s.image:
            raise LaunchError(
                "--cluster k8s needs a container image, and none was given.\n"
                "HINT: build and push docker/Dockerfile, then pass --image REGISTRY/fulmen:TAG."
            )
        return build_appdef(spec, image=spec.k8s.image, run_dir=pod_run_dir(spec, run_dir.name))
    # local_cwd runs in the current directory; its "image" is only a label there.
    return build_appdef(
        spec,
        image=spec.k8s.image or os.getcwd(),
        run_dir=str(run_dir),
        rendezvous_port=rendezvous_port,
        path_prefix=venv_bin_dir(),
        restart_in_replica=True,
    )


def open_runner() -> Runner:
    """A torchx runner (the one seam to torchx's schedulers; tests replace it with a fake client)."""
    from torchx.runner import get_runner

    return get_runner()


def dryrun_info(runner: Runner, spec: JobSpec, app: AppDef, *, log_dir: str | None) -> AppDryRunInfo:
    """Ask torchx for the request it would submit (its ``dryrun``), with the spec's run options.

    torchx reports caveats as Python warnings (e.g. Volcano's retry support); they are passed on
    as one ``fulmen: torchx note:`` line each instead of a warning with a source line.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = runner.dryrun(app, scheduler_for(spec), cfg=scheduler_cfg(spec, log_dir=log_dir))
    # torchx warns once per replica; one note per distinct message is enough
    for note in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
        print(f"fulmen: torchx note: {note}", file=sys.stderr)
    return info


def render_dryrun(spec: JobSpec) -> str:
    """What ``--dry-run`` prints: the request torchx would submit, as torchx formats it.

    For ``k8s`` that is the Volcano ``Job`` resource as YAML (its ``metadata.name`` carries a
    random suffix torchx adds per submission); for ``torchx-local`` the processes torchx would
    start. Nothing is created on disk.
    """
    require_torchx(spec.cluster)
    if spec.cluster == "torchx-local":
        local.check_entry(spec)
    run_dir = rundir.run_dir_for(spec, "dry-run")
    app = appdef_for(spec, run_dir=run_dir, rendezvous_port=spec.master_port)
    log_dir = None if spec.cluster == "k8s" else str(run_dir / "torchx")
    with open_runner() as runner:
        request = str(dryrun_info(runner, spec, app, log_dir=log_dir))
    if spec.cluster == "k8s":
        # torchx passes the namespace beside the resource, not in it; a YAML comment keeps the
        # output valid input for `kubectl create -n NAMESPACE -f -`.
        queue = scheduler_cfg(spec)["queue"]
        request = (
            f"# Volcano job for the torchx kubernetes scheduler: namespace {spec.k8s.namespace}, "
            f"queue {queue}\n{request}"
        )
    return request


def run(spec: JobSpec, *, dry_run: bool = False, wait: bool = False) -> int:
    """Launch ``spec`` through torchx; the CLI's exit code.

    ``dry_run`` prints the request and submits nothing. Otherwise a run directory and the job's
    records are written, the app is scheduled, and (always for torchx-local, with ``wait`` for
    k8s) the launcher follows it to the end.
    """
    if dry_run:
        print(render_dryrun(spec))
        return 0
    require_torchx(spec.cluster)
    if spec.cluster == "torchx-local":
        local.check_entry(spec)  # the replicas run here: a missing script fails before submission
    run_dir, run_id = torchx_jobs.create_run_dir(spec)
    port, claimed = None, False
    if spec.cluster == "torchx-local" and spec.nodes > 1:
        port, claimed = ports.choose_port(run_id, explicit=spec.master_port)
    try:
        app = appdef_for(spec, run_dir=run_dir, rendezvous_port=port)
        with open_runner() as runner:
            return _submit_and_follow(runner, spec, app, run_dir=run_dir, wait=wait)
    finally:
        if claimed and port is not None:
            ports.release_port(port)


def _submit_and_follow(runner: Runner, spec: JobSpec, app: AppDef, *, run_dir: Path, wait: bool) -> int:
    info = dryrun_info(runner, spec, app, log_dir=str(run_dir / "torchx"))
    handle = runner.schedule(info)
    run, record = torchx_jobs.record_submission(
        spec, run_dir, handle=handle, scheduler=scheduler_for(spec), info=info, role=role_name(spec)
    )
    print(f"fulmen: submitted {handle}\nfulmen: run directory {run_dir}", file=sys.stderr)
    if spec.cluster == "k8s" and not wait:
        return 0
    local_run = run.launcher_pid is not None
    tick = None
    if local_run:  # torchx-local: show replica 0 like `launch` shows rank 0
        tick = LogFollower(torchx_jobs.replica_log_path(info, run.role, 0)).pump

    poll_s = POLL_INTERVAL_S[run.scheduler]
    state = wait_for(runner, handle, tick=tick, cancel_on_signal=local_run, poll_s=poll_s)
    if state is None:
        print(
            f"fulmen: stopped waiting; {handle} keeps running.\n"
            f"HINT: `fulmen status {handle}` to check on it, `fulmen cancel {handle}` to stop it.",
            file=sys.stderr,
        )
        return CANCELLED_EXIT_CODE
    torchx_jobs.record_final_state(run_dir, run, state)
    return exit_code(state)


class _StopFlag:
    """Set by SIGTERM/SIGINT while waiting; the poll loop acts on it (handlers only set flags)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum


def wait_for(
    runner: Runner,
    handle: str,
    *,
    tick: Callable[[], None] | None = None,
    cancel_on_signal: bool = True,
    poll_s: float = 0.5,
) -> str | None:
    """Poll ``handle`` until it ends; returns the final torchx state name (``SUCCEEDED``, ...).

    ``tick`` runs at every poll and once more at the end (torchx-local echoes replica 0's output
    there); without it, state changes are printed. SIGTERM / SIGINT only set a flag. With
    ``cancel_on_signal`` (torchx-local, whose replicas cannot outlive this process) the loop then
    cancels the app, so ``fulmen cancel`` (which signals this process) or Ctrl-C stops every
    replica; otherwise (a Kubernetes job) it stops waiting and returns None, leaving the job be.
    """
    from torchx.specs import NONE  # torchx's "no structured error" marker

    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    last_state = ""
    cancelled = False
    try:
        while True:
            if stop.signum is not None and not cancelled:
                if not cancel_on_signal:
                    return None
                runner.cancel(handle)
                cancelled = True
            status = runner.status(handle)
            state = status.state.name if status is not None else "UNKNOWN"
            if tick is not None:
                tick()
            elif state != last_state:
                print(f"fulmen: {handle} is {state}", file=sys.stderr)
            last_state = state
            if status is None or status.is_terminal():
                if tick is not None:
                    tick()
                if status is not None and state == "FAILED" and status.structured_error_msg != NONE:
                    print(status.structured_error_msg, file=sys.stderr)
                return state
            time.sleep(poll_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(state: str) -> int:
    """The launcher's exit code for a final torchx state."""
    if state == "SUCCEEDED":
        return 0
    if state == "FAILED":
        return 1
    return CANCELLED_EXIT_CODE


# The job commands (`fulmen status / logs / cancel`) for records whose backend is k8s or
# torchx-local; fulmen/launcher/job_commands.py dispatches here by ``record.backend``.


def status(record: records.JobRecord) -> str:
    """The job's state name (torchx's AppState, or ``LOST`` for a torchx-local job whose launcher died)."""
    return torchx_jobs.status_of(Path(record.run_dir))


def logs(record: records.JobRecord, rank: int = 0, follow: bool = False) -> Iterator[str]:
    """Lines of rank ``rank``'s output; with ``follow``, until the job ends."""
    return torchx_jobs.logs_of(Path(record.run_dir), rank=rank, follow=follow)


def cancel(record: records.JobRecord) -> None:
    """Stop the job (delete the Volcano job, or stop the torchx-local launcher and its replicas)."""
    torchx_jobs.cancel_run(Path(record.run_dir))
