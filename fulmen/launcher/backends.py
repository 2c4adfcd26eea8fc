"""The backend registry, and ``launch``: a JobSpec through its backend's dryrun and submit.

The protocol every backend implements is ``fulmen.jobs.backend.Backend`` (in the jobs layer, so
that ``fulmen.slurm`` can implement it without importing the launcher). A backend is found by name through :data:`BACKENDS` (a cluster name for ``launch``, the
record's ``backend`` for the job commands). Modules are imported on first use: the local one
needs torch, the SLURM one submitit, the torchx ones torchx, and ``launch --help`` needs none.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

from fulmen.errors import LaunchError
from fulmen.jobs.backend import Backend, Request, Submitted
from fulmen.jobs.records import RECORD_FILE
from fulmen.jobs.spec import JobSpec

#: backend name -> "module:class" of its Backend.
BACKENDS = {
    "local": "fulmen.launcher.local:LocalBackend",
    "slurm": "fulmen.slurm.submit:SlurmBackend",
    "k8s": "fulmen.launcher.torchx:TorchxBackend",
    "torchx-local": "fulmen.launcher.torchx:TorchxBackend",
}


def backend_for(name: str) -> Backend:
    """The backend registered as ``name`` (a cluster name or a job record's ``backend``)."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise LaunchError(
            f"No backend named {name!r}. Expected one of: {', '.join(BACKENDS)}.\n"
            "HINT: a job record with another backend was written by a different fulmen version."
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise LaunchError(f"--cluster {name}: its backend ({module_name}) is not part of this install.") from exc
    return getattr(module, class_name)(name)


def launch(spec: JobSpec, *, dry_run: bool = False, wait: bool = False) -> int:
    """Run ``spec`` on its cluster's backend; the CLI's exit code.

    ``dry_run`` prints the request and stops. Otherwise the request is submitted; a job that
    ran in the foreground returns its exit code, a background job returns 0 at once or, with
    ``wait``, the code it ends with.
    """
    backend = backend_for(spec.cluster)
    request = backend.dryrun(spec)
    if dry_run:
        text = request.render()
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return 0
    submitted = submit_or_clean_up(backend, request)
    if submitted.exit_code is not None:
        return submitted.exit_code
    return backend.wait(submitted) if wait else 0


def submit_or_clean_up(backend: Backend, request: Request) -> Submitted:
    """``backend.submit(request)``; if it fails before the job was recorded, remove the run dir it made.

    A submission that sbatch (or torchx, or a missing extra) refuses would otherwise leave a
    folder with a spec and a code snapshot but no job: ``fulmen list`` cannot show it, and the
    next look at ``fulmen_runs/`` finds a run that never ran. A run dir that existed before
    (``--run-dir``, a relaunch) or that holds a job record (the job exists) is kept.
    """
    run_dir = Path(request.spec.run_dir) if request.spec.run_dir else None
    existed = run_dir is not None and run_dir.exists()
    try:
        return backend.submit(request)
    except BaseException:
        if run_dir is not None and not existed and run_dir.is_dir() and not (run_dir / RECORD_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"fulmen: the submission failed; removed its unfinished run dir {run_dir}",
                  file=sys.stderr, flush=True)
        raise
