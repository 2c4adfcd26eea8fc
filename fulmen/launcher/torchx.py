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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fulmen.errors import LaunchError, MissingExtraError
from fulmen.jobs import ports, records, rundir
from fulmen.jobs.backend import JobDescription, Submitted
from fulmen.jobs.exit_codes import CANCELLED_EXIT_CODE
from fulmen.jobs.logs import LogFollower
from fulmen.jobs.rundir import NewRun
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


def appdef_for(spec: JobSpec, *, run_dir: Path, rendezvous_port: int | None = None,
               pod_name: str | None = None) -> AppDef:
    """The AppDef for ``spec``: the image and in-pod run dir for k8s, local paths for torchx-local.

    ``run_dir`` is the local run directory; pods see ``pod_run_dir(spec, pod_name or run_dir.name)``
    (a sweep trial passes ``<sweep>/trial_NNNN`` so trials of different sweeps never share a folder).
    ``rendezvous_port`` matters only for multi-node torchx-local, whose replicas share this host.
    """
    if spec.cluster == "k8s":
        if not spec.k8s.image:
            raise LaunchError(
                "--cluster k8s needs a container image, and none was given.\n"
                "HINT: build and push docker/Dockerfile, then pass --image REGISTRY/fulmen:TAG."
            )
        return build_appdef(spec, image=spec.k8s.image, run_dir=pod_run_dir(spec, pod_name or run_dir.name))
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


@dataclass(frozen=True)
class TorchxRequest:
    """A torchx job, decided: the AppDef and torchx's own request for it (``AppDryRunInfo``).

    ``render()`` prints torchx's request (for ``k8s`` the Volcano ``Job`` resource as YAML, for
    ``torchx-local`` the processes it would start); ``submit`` schedules that same object.
    """

    spec: JobSpec
    run: NewRun
    app: AppDef
    info: AppDryRunInfo
    rendezvous_port: int | None = None
    port_claimed: bool = False

    def render(self) -> str:
        request = str(self.info)
        if self.spec.cluster == "k8s":
            # torchx passes the namespace beside the resource, not in it; a YAML comment keeps the
            # output valid input for `kubectl create -n NAMESPACE -f -`.
            queue = scheduler_cfg(self.spec)["queue"]
            request = (
                f"# Volcano job for the torchx kubernetes scheduler: namespace {self.spec.k8s.namespace}, "
                f"queue {queue}\n{request}"
            )
        return request


class TorchxBackend:
    """``--cluster k8s`` and ``--cluster torchx-local`` through torchx's runner.

    torchx-local always runs in the foreground (its replicas live as long as the runner that
    started them); Kubernetes jobs return after submission unless waited for.
    """

    def __init__(self, name: str = "k8s") -> None:
        self.name = name

    def dryrun(self, spec: JobSpec) -> TorchxRequest:
        return self.request_for(spec, rundir.new_run(spec))

    def request_for(self, spec: JobSpec, run: NewRun, pod_name: str | None = None) -> TorchxRequest:
        """The request for ``spec`` running in ``run`` (nothing is created on disk); ``pod_name``
        is the run's folder under the pods' run root (default: the run dir's name)."""
        require_torchx(spec.cluster)
        if spec.cluster == "torchx-local":
            local.check_entry(spec)  # the replicas run here: a missing script fails before submission
        port, claimed = spec.master_port, False
        if spec.cluster == "torchx-local" and spec.nodes > 1:
            port, claimed = ports.choose_port(run.run_id, explicit=spec.master_port)
        app = appdef_for(spec, run_dir=run.run_dir, rendezvous_port=port, pod_name=pod_name)
        log_dir = None if spec.cluster == "k8s" else str(run.run_dir / "torchx")
        with open_runner() as runner:
            info = dryrun_info(runner, spec, app, log_dir=log_dir)
        # run.spec names the run dir: a failed submission's cleanup (backends.submit_or_clean_up) finds it there
        return TorchxRequest(run.spec, run, app, info, port, claimed)

    def submit(self, request: TorchxRequest) -> Submitted:
        """Schedule the request; torchx-local is followed to its end here (exit code set)."""
        request.run.create()
        try:
            with open_runner() as runner:
                return _submit_and_follow(runner, request)
        finally:
            if request.port_claimed and request.rendezvous_port is not None:
                ports.release_port(request.rendezvous_port)

    def wait(self, submitted: Submitted) -> int:
        run = torchx_jobs.TorchxRun.load(submitted.run_dir)
        with open_runner() as runner:
            return _follow(runner, run, submitted.run_dir, tick=None)

    def describe(self, record: records.JobRecord) -> JobDescription:
        """torchx's AppState name, or ``LOST`` for a torchx-local job whose launcher died."""
        return JobDescription(torchx_jobs.status_of(Path(record.run_dir)))

    def cancel(self, record: records.JobRecord) -> None:
        """Delete the Volcano job, or stop the torchx-local launcher and its replicas."""
        torchx_jobs.cancel_run(Path(record.run_dir))

    def logs(self, record: records.JobRecord, *, rank: int, follow: bool) -> Iterator[str]:
        """Rank ``rank``'s output (for k8s: its pod's); with ``follow``, until the job ends."""
        for line in torchx_jobs.logs_of(Path(record.run_dir), rank=rank, follow=follow):
            yield line if line.endswith("\n") else line + "\n"


def render_dryrun(spec: JobSpec, run_id: str = "dry-run") -> str:
    """The ``--dry-run`` text of ``spec`` for a run named ``run_id`` (a stable placeholder by default)."""
    backend = TorchxBackend(spec.cluster)
    return backend.request_for(spec, rundir.new_run(spec, run_id=run_id)).render()


def _submit_and_follow(runner: Runner, request: TorchxRequest) -> Submitted:
    spec, run_dir = request.spec, request.run.run_dir
    handle = _schedule(runner, request)
    run, _ = torchx_jobs.record_submission(
        spec, run_dir, handle=handle, scheduler=scheduler_for(spec), info=request.info, role=role_name(spec)
    )
    print(f"fulmen: submitted {handle}\nfulmen: run directory {run_dir}", file=sys.stderr)
    if run.launcher_pid is None:  # Kubernetes: the job runs without us
        return Submitted(handle, run_dir)
    # torchx-local: show replica 0 like `launch` shows rank 0
    tick = LogFollower(torchx_jobs.replica_log_path(request.info, run.role, 0)).pump
    return Submitted(handle, run_dir, exit_code=_follow(runner, run, run_dir, tick=tick))


def _schedule(runner: Runner, request: TorchxRequest) -> str:
    """``runner.schedule``; a Kubernetes cluster that cannot be reached is one LaunchError, not a urllib3 traceback."""
    if request.spec.cluster != "k8s":
        return runner.schedule(request.info)
    with warnings.catch_warnings(record=True) as caught:  # torchx warns "failed to load kube config: ..."
        warnings.simplefilter("always")
        try:
            return runner.schedule(request.info)
        except Exception as exc:  # kubernetes/urllib3 raise many types for one cause: no cluster answered
            config = next((str(w.message) for w in caught if "kube config" in str(w.message)), None)
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
            raise LaunchError(
                "could not submit to Kubernetes: " + (f"{config.rstrip('.')}; " if config else "") + reason + "\n"
                "HINT: check that `kubectl cluster-info` works with the same KUBECONFIG (or ~/.kube/config) and "
                "context; `launch --cluster k8s --dry-run ...` shows the Volcano job without a cluster."
            ) from exc
        finally:
            for w in caught:
                if "kube config" not in str(w.message):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _follow(runner: Runner, run: torchx_jobs.TorchxRun, run_dir: Path, *, tick: Callable[[], None] | None) -> int:
    """Wait for the job to end, record its final state; the launcher's exit code."""
    local_run = run.launcher_pid is not None
    poll_s = POLL_INTERVAL_S[run.scheduler]
    handle = run.handle
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
