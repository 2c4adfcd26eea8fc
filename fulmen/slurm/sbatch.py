"""JobSpec -> submitit SlurmExecutor parameters -> the sbatch script that will be submitted.

Pure functions: no SLURM needed, so ``--dry-run`` works on any machine. The script is rendered
by submitit's own renderer with exactly the parameters the executor gets, so what
``--dry-run`` prints is what ``sbatch`` receives.

Mapping (sbatch flag <- JobSpec field):

- ``--nodes`` <- ``nodes``; ``--ntasks-per-node`` <- ``gpus_per_node`` or ``nproc_per_node``
  (one task per rank); ``--gpus-per-node`` <- ``gpus_per_node`` (not set for
  ``--nproc-per-node``, which is for CPU partitions)
- ``--partition --time --account --qos --constraint --mem --cpus-per-task --exclusive``
  <- ``spec.slurm`` fields of the same names; ``--job-name`` <- ``spec.job_name``
- ``--signal`` <- ``spec.slurm.signal`` (default ``USR2@90``): the warning before the time limit
- ``--requeue`` always (a preempted job may be requeued even where JobRequeue=0),
  ``--open-mode=append`` always (a requeued run must not truncate its output files)
- any ``--sbatch-arg KEY=VALUE`` last, so it can override the above
- ``--setup LINE`` (repeatable) <- ``spec.slurm.setup``: lines of the batch script before
  ``srun`` (submitit's ``setup``), e.g. ``module load cuda``; srun's tasks inherit what they export
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from fulmen.errors import MissingExtraError
from fulmen.jobs.spec import JobSpec

SUBMITIT_FOLDER = "submitit"
"""Sub-folder of the run directory where submitit keeps pickles, its sbatch file and raw logs."""


def submitit_folder(run_dir: Path) -> Path:
    return run_dir / SUBMITIT_FOLDER


def executor_parameters(spec: JobSpec) -> dict[str, Any]:
    """Keyword arguments for ``submitit.SlurmExecutor.update_parameters``.

    ``time`` is always present: submitit would otherwise default to 5 minutes; None leaves
    the partition's default time limit in force.
    """
    slurm = spec.slurm
    params: dict[str, Any] = {
        "job_name": spec.job_name,
        "nodes": spec.nodes,
        "ntasks_per_node": spec.ranks_per_node,
        "time": _time_value(slurm.time),
        "stderr_to_stdout": False,
    }
    if spec.gpus_per_node is not None:
        params["gpus_per_node"] = spec.gpus_per_node
    optional = {
        "partition": slurm.partition,
        "account": slurm.account,
        "qos": slurm.qos,
        "constraint": slurm.constraint,
        "mem": slurm.mem,
        "cpus_per_task": slurm.cpus_per_task,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if slurm.exclusive:
        params["exclusive"] = True
    if slurm.setup:
        params["setup"] = list(slurm.setup)
    additional: dict[str, Any] = {"signal": slurm.signal, "requeue": True, "open-mode": "append"}
    for key, value in slurm.extra:
        additional[key.lstrip("-").replace("_", "-")] = True if value == "" else value
    params["additional_parameters"] = additional
    return params


def _time_value(time: str | None) -> str | int | None:
    """sbatch accepts ``60``, ``1:00:00``, ``2-00:00:00``; a bare number stays an int (minutes)."""
    if time is None:
        return None
    return int(time) if time.isdigit() else time


def submitit_command(python: str | None = None) -> str:
    """What every task runs (submitit's entry point; it unpickles and calls our rank entry)."""
    return f"{python or shlex.quote(sys.executable)} -u -m submitit.core._submit"


def render_sbatch(spec: JobSpec, run_dir: Path, python: str | None = None) -> str:
    """The sbatch script submitit will write for ``spec`` when the run lives in ``run_dir``."""
    try:
        from submitit.slurm.slurm import _make_sbatch_string
    except ImportError as exc:  # the same answer as a real submission (submit.make_executor)
        raise MissingExtraError("submitit", "slurm", "Submitting to SLURM") from exc

    folder = submitit_folder(run_dir)
    params = {k: v for k, v in executor_parameters(spec).items()}
    command = f"{submitit_command(python)} {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, **params)
