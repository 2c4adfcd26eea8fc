"""A SLURM job array of runs: one sbatch, element ``i`` runs ``specs[i]`` in its own run dir.

What a sweep on ``--cluster slurm`` submits (the sweep itself is the launcher's idea; here it
is only "N runs of one script with one set of sbatch options"). ``--array=0-(N-1)%K`` comes
from submitit's batch submission (``array_parallelism``). The code is snapshotted once into
``<folder>/code``; each run dir's ``code`` links to it, so every element runs the same code
and the rank entry (``ScriptTask``) finds it where it always looks. Each element is a normal
fulmen SLURM task: its own ``rank_N.log``, resume checkpoint and array-aware requeue
(``SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID``), and its own job record (``fulmen status A_3``).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from fulmen.errors import LaunchError, MissingExtraError
from fulmen.jobs.records import new_record, write_record
from fulmen.jobs.rundir import prepare_run_dir, private_files
from fulmen.jobs.snapshot import snapshot_code
from fulmen.jobs.spec import JobSpec
from fulmen.slurm import commands, validation
from fulmen.slurm.rank_entry import ScriptTask
from fulmen.slurm.sbatch import executor_parameters, submitit_command, submitit_folder
from fulmen.slurm.submit import task_environment


@dataclasses.dataclass(frozen=True)
class ArrayRequest:
    """The array, decided: its sbatch script (``--dry-run`` prints it) and one spec per element."""

    specs: tuple[JobSpec, ...]
    folder: Path
    parallel: int
    script: str

    @property
    def spec(self) -> JobSpec:
        return self.specs[0]

    def render(self) -> str:
        return self.script + f"\n# one sbatch call: {len(self.specs)} element(s), at most {self.parallel} at a time\n"


def array_dryrun(specs: Sequence[JobSpec], folder: Path, parallel: int) -> ArrayRequest:
    """Checks that need no cluster, then the array's sbatch script. The specs differ only in
    their run dir, arguments and environment (one sbatch option set for the whole array)."""
    if not specs:
        raise LaunchError("A job array needs at least one run (every trial of this sweep is COMPLETED).")
    validation.check_spec(specs[0])
    try:
        from submitit.slurm.slurm import _make_sbatch_string
    except ImportError as exc:
        raise MissingExtraError("submitit", "slurm", "Submitting to SLURM") from exc
    params = executor_parameters(specs[0])
    command = f"{submitit_command()} {shlex.quote(str(submitit_folder(folder)))}"
    if len(specs) > 1:  # submitit submits a single run as a plain job
        params.update(map_count=len(specs), array_parallelism=parallel)
    script = _make_sbatch_string(command=command, folder=submitit_folder(folder), **params)
    return ArrayRequest(tuple(specs), folder, parallel, script)


def submit_array(request: ArrayRequest) -> list[str]:
    """Snapshot the code once, create each run dir, submit ONE sbatch; the elements' job ids
    (``A_0``, ``A_1``, ...; a single run gets a plain id), in the order of ``request.specs``."""
    try:
        import submitit
    except ImportError as exc:
        raise MissingExtraError("submitit", "slurm", "Submitting to SLURM") from exc
    base = request.spec
    validation.check_against_cluster(base)
    check_array_size(len(request.specs), commands.max_array_size())
    snapshot = snapshot_code(base.entry, request.folder, entry_is_module=base.entry_is_module)
    tasks = [_element_task(spec, request.folder, snapshot.entry) for spec in request.specs]
    executor = submitit.SlurmExecutor(folder=submitit_folder(request.folder), max_num_timeout=base.slurm.max_requeues)
    executor.update_parameters(**executor_parameters(base), array_parallelism=request.parallel)
    try:
        with private_files(), executor.batch():  # the pickled tasks hold the --env values: 0600
            jobs = [executor.submit(task) for task in tasks]
    except Exception as exc:  # submitit raises FailedJobError / CalledProcessError with sbatch's stderr
        raise LaunchError(f"sbatch refused the job array: {exc}\nHINT: check the options with --dry-run.") from exc
    ids = [str(job.job_id) for job in jobs]
    for spec, job_id in zip(request.specs, ids):
        write_record(new_record(job_id, "slurm", Path(spec.run_dir or ""), spec.job_name, spec.to_record(),
                                submitit_folder=str(submitit_folder(request.folder)), num_tasks=spec.world_size))
    return ids


def check_array_size(count: int, max_size: int | None) -> None:
    """Refuse, before anything is created, an array longer than the controller's ``MaxArraySize``."""
    if max_size is not None and count > max_size:
        raise LaunchError(
            f"The sweep needs a job array of {count} elements, but this cluster's MaxArraySize is {max_size} "
            f"(indices 0-{max_size - 1}).\nHINT: run at most {max_size} trials per sweep (--trials {max_size} keeps "
            "the grid's first ones), or ask the cluster's admins to raise MaxArraySize."
        )


def _element_task(spec: JobSpec, folder: Path, entry: str) -> ScriptTask:
    run_dir = Path(spec.run_dir or "")
    prepare_run_dir(spec, run_dir)
    code = run_dir / "code"
    if not code.exists():
        os.symlink(os.path.relpath(folder / "code", run_dir), code)
    return ScriptTask(
        run_dir=str(run_dir), entry=entry, args=spec.args, entry_is_module=spec.entry_is_module,
        warning_signal=spec.slurm.signal, requeue_on_failure=spec.slurm.requeue_on_failure,
        env=task_environment(spec), workdir=str(Path.cwd()),
    )  # fmt: skip
