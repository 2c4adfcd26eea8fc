"""Python API: submit a callable to SLURM and fetch its result.

``submit(fn, *args, spec=JobSpec(...), **kwargs)`` runs ``fn(*args, **kwargs)`` in every task
of a SLURM job (cloudpickled by submitit) with the same rank setup as a script
(``FULMEN_RUN_DIR``, ``MASTER_ADDR``/``MASTER_PORT``, per-rank logs, requeue on signals), and
returns a :class:`Submission`, whose ``result()`` is rank 0's return value.

A callable is pickled, not snapshotted: functions defined in ``__main__`` or a notebook travel
by value; functions imported from a package are imported again in the job, from the same
environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from fulmen.errors import FulmenError, LaunchError
from fulmen.jobs.spec import JobSpec

R = TypeVar("R")


@dataclasses.dataclass
class Submission(Generic[R]):
    """A submitted SLURM job: its id, run directory, and access to its results."""

    job_id: str
    run_dir: Path
    num_tasks: int

    def _job(self) -> Any:
        from submitit import SlurmJob

        from fulmen.slurm.sbatch import submitit_folder

        return SlurmJob(folder=submitit_folder(self.run_dir), job_id=self.job_id, tasks=tuple(range(self.num_tasks)))

    def result(self) -> R:
        """Rank 0's return value; blocks until the job ends. Raises LaunchError if it failed."""
        try:
            return self._job().results()[0]
        except FulmenError:
            raise
        except Exception as exc:  # submitit's FailedJobError / UncompletedJobError carry the traceback
            raise LaunchError(
                f"SLURM job {self.job_id} did not produce a result: {exc}\n"
                f"HINT: fulmen logs {self.job_id} --rank 0"
            ) from exc

    def results(self) -> list[R]:
        """Every rank's return value, by global rank."""
        try:
            return list(self._job().results())
        except Exception as exc:
            raise LaunchError(f"SLURM job {self.job_id} did not produce results: {exc}") from exc

    def state(self) -> str:
        from fulmen.slurm import commands

        return commands.job_state(self.job_id).state

    def cancel(self) -> None:
        from fulmen.slurm import commands

        commands.cancel(self.job_id)


def submit(fn: Callable[..., R], *args: Any, spec: JobSpec | None = None, **kwargs: Any) -> Submission[R]:
    """Run ``fn(*args, **kwargs)`` in every task of a SLURM job described by ``spec``.

    ``spec.entry`` is only a label here (it names the run); ``spec.cluster`` must be
    ``"slurm"``. Nodes, ranks per node and every sbatch option come from ``spec``.
    """
    from fulmen.jobs.rundir import new_run
    from fulmen.slurm.rank_entry import CallableTask
    from fulmen.slurm.sbatch import render_sbatch
    from fulmen.slurm.submit import SlurmBackend, SlurmRequest, task_environment

    name = getattr(fn, "__name__", "callable")
    spec = spec or JobSpec(entry=name, cluster="slurm")
    if spec.cluster != "slurm":
        raise LaunchError(f"fulmen.launcher.api.submit sends callables to SLURM, got cluster={spec.cluster!r}.")
    if spec.nodes > 1 and spec.gpus_per_node is None and spec.nproc_per_node is None:
        raise LaunchError(
            f"nodes={spec.nodes} without gpus_per_node or nproc_per_node: ranks per node unknown.\n"
            "HINT: set JobSpec(gpus_per_node=N) or JobSpec(nproc_per_node=N)."
        )
    run = new_run(spec)
    task = CallableTask(
        run_dir=str(run.run_dir), fn=fn, args=args, kwargs=kwargs,
        warning_signal=spec.slurm.signal, requeue_on_failure=spec.slurm.requeue_on_failure,
        env=task_environment(spec),
    )
    request = SlurmRequest(run.spec, run, render_sbatch(run.spec, run.run_dir), task=task)
    submitted = SlurmBackend().submit(request)  # checks against the controller first
    return Submission(submitted.job_id, submitted.run_dir, spec.world_size)


def launch(spec: JobSpec, *, dry_run: bool = False, wait: bool = False) -> int:
    """Submit a script job (what ``launch --cluster slurm`` does); returns the CLI's exit code."""
    if spec.cluster != "slurm":
        raise LaunchError(f"fulmen.launcher.api.launch handles cluster='slurm', got {spec.cluster!r}.")
    from fulmen.launcher.backends import launch as launch_spec

    return launch_spec(spec, dry_run=dry_run, wait=wait)
