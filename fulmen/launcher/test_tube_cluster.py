"""test_tube's ``SlurmCluster`` driver, mapped onto fulmen's sweep job array.

A script written for test_tube 0.7.5 keeps its shape::

    hparams = parser.parse_args()                       # fulmen.sweep.HyperOptArgumentParser
    cluster = SlurmCluster(hyperparam_optimizer=hparams, log_path="runs", python_cmd="python3")
    cluster.per_experiment_nb_gpus = 2
    cluster.job_time = "4:00:00"
    cluster.optimize_parallel_cluster_gpu(train, nb_trials=6, job_name="search")

Run by hand, ``optimize_parallel_cluster_*`` submits the trials as ONE job array, exactly like
``launch --cluster slurm --sweep ...`` (one sbatch call, one code snapshot, each element a fulmen
run in ``<log_path>/<job_name>-sweep-<id>/trial_NNNN`` that requeues and resumes on its own).
test_tube instead wrote one sbatch script per trial. Each element runs the same script again with
the trial's values appended to its arguments; there ``optimize_parallel_cluster_*`` sees the trial
(``fulmen.sweep.trial_info()``) and calls ``train_function(hparams, cluster)`` as test_tube did.

Differences: the checkpoint save/load functions are accepted but never called (the Trainer saves
a resume checkpoint on the warning signal and resumes from it after the requeue by itself);
``python_cmd`` is kept, but the ranks run under the interpreter that submits (fulmen's rank entry);
``max_parallel`` (not in test_tube, which queued every trial at once) is the array's ``%K``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fulmen.errors import LaunchError
from fulmen.jobs.spec import JobSpec, SlurmOptions
from fulmen.sweep.space import Parameter, SweepSpace, Trial
from fulmen.sweep.trial import trial_info


class SlurmCluster:
    """test_tube's ``SlurmCluster(hyperparam_optimizer, log_path, python_cmd, ...)`` with its settings."""

    def __init__(self, hyperparam_optimizer: Any = None, log_path: str | None = None, python_cmd: str = "python3",
                 enable_log_err: bool = True, enable_log_out: bool = True) -> None:  # fmt: skip
        self.hyperparam_optimizer = hyperparam_optimizer
        self.log_path = log_path
        self.python_cmd = python_cmd
        self.enable_log_err, self.enable_log_out = enable_log_err, enable_log_out
        self.job_time = "15:00"
        self.minutes_to_checkpoint_before_walltime = 5
        self.per_experiment_nb_gpus = 1
        self.per_experiment_nb_cpus = 1
        self.per_experiment_nb_nodes = 1
        self.memory_mb_per_node = 2000
        self.gpu_type: str | None = None
        self.email: str | None = None
        self.notify_on_end = self.notify_on_fail = False
        self.modules: list[str] = []
        self.commands: list[str] = []
        self.slurm_commands: list[tuple[str, Any, str]] = []
        self.max_parallel: int | None = None
        self.checkpoint_save_function: list[Any] | None = None
        self.checkpoint_load_function: list[Any] | None = None
        trial = trial_info()
        self.is_from_slurm_object = trial is not None
        self.hpc_exp_number = int(trial["index"]) if trial else 0

    # ---- test_tube's setters --------------------------------------------------------
    def add_slurm_cmd(self, cmd: str, value: Any, comment: str) -> None:
        """An ``#SBATCH --cmd=value`` line for every trial."""
        self.slurm_commands.append((cmd, value, comment))

    def add_command(self, cmd: str) -> None:
        """A shell line run in the batch script before the trial starts."""
        self.commands.append(cmd)

    def load_modules(self, modules: list[str]) -> None:
        """``module load M`` for each, before the trial starts."""
        self.modules = list(modules)

    def notify_job_status(self, email: str, on_done: bool, on_fail: bool) -> None:
        """Mail ``email`` when a trial ends (``on_done``) or fails (``on_fail``)."""
        self.email, self.notify_on_end, self.notify_on_fail = email, on_done, on_fail

    def set_checkpoint_save_function(self, fx: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        """Kept for test_tube's API; never called (the Trainer saves the resume checkpoint itself)."""
        self.checkpoint_save_function = [fx, kwargs]

    def set_checkpoint_load_function(self, fx: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        """Kept for test_tube's API; never called (a requeued trial resumes by itself)."""
        self.checkpoint_load_function = [fx, kwargs]

    # ---- the search -------------------------------------------------------------------
    def optimize_parallel_cluster_gpu(self, train_function: Callable[[Any, SlurmCluster], Any], nb_trials: int,
                                      job_name: str, enable_auto_resubmit: bool = False,
                                      job_display_name: str | None = None) -> Any:  # fmt: skip
        """Submit ``nb_trials`` trials with ``per_experiment_nb_gpus`` GPUs each; inside a trial, train it."""
        return self._optimize(train_function, nb_trials, job_display_name or job_name, on_gpu=True)

    def optimize_parallel_cluster_cpu(self, train_function: Callable[[Any, SlurmCluster], Any], nb_trials: int,
                                      job_name: str, enable_auto_resubmit: bool = False,
                                      job_display_name: str | None = None) -> Any:  # fmt: skip
        """Submit ``nb_trials`` CPU trials (one rank each); inside a trial, train it."""
        return self._optimize(train_function, nb_trials, job_display_name or job_name, on_gpu=False)

    def _optimize(self, train_function: Callable[[Any, SlurmCluster], Any], nb_trials: int, job_name: str,
                  on_gpu: bool) -> Any:  # fmt: skip
        if self.is_from_slurm_object:
            return train_function(self.hyperparam_optimizer, self)  # test_tube's per-trial call
        from fulmen.launcher.sweep_run import sweep_dir_for
        from fulmen.launcher.sweep_slurm import run_array

        spec, space, trials = self.sweep_plan(nb_trials, job_name, on_gpu=on_gpu)
        code = run_array(spec, sweep_dir_for(spec), space, trials, trials, parallel=self.max_parallel or len(trials),
                         dry_run=False, wait=False)
        if code:
            raise LaunchError(f"submitting the {len(trials)} trials of {job_name!r} failed (exit code {code}).")
        return None

    def sweep_plan(self, nb_trials: int, job_name: str, *, on_gpu: bool,
                   argv: list[str] | None = None) -> tuple[JobSpec, SweepSpace, list[Trial]]:  # fmt: skip
        """The job spec every trial shares, the space (for ``sweep.json``) and the trials, exactly as
        the parser generates them (grid order, or its random draws); pure, so it can be checked."""
        argv = sys.argv if argv is None else argv
        if self.gpu_type is not None:
            raise LaunchError(f"cluster.gpu_type={self.gpu_type!r} has no fulmen equivalent yet.\n"
                              f"HINT: cluster.add_slurm_cmd('constraint', {self.gpu_type!r}, '') if the cluster "
                              "tags its GPU nodes, or leave gpu_type unset.")
        parser = self.hyperparam_optimizer.generate_trials.__self__  # the HyperOptArgumentParser behind hparams
        tunable = [(flag.lstrip("-"), option) for flag, option in parser.opt_args.items() if option.tunable]
        generated = self.hyperparam_optimizer.generate_trials(nb_trials)
        trials = [Trial(i, tuple((name, str(getattr(ns, option.name))) for name, option in tunable))
                  for i, ns in enumerate(generated)]
        space = SweepSpace(tuple(Parameter(name, tuple(str(v) for v in option.values)) for name, option in tunable),
                           mode="grid" if parser.strategy == "grid_search" else "random", trials=nb_trials)
        gpus = self.per_experiment_nb_gpus if on_gpu and self.per_experiment_nb_gpus > 0 else None
        spec = JobSpec(entry=_entry(argv[0]), args=tuple(argv[1:]), cluster="slurm", nodes=self.per_experiment_nb_nodes,
                       gpus_per_node=gpus, nproc_per_node=None if gpus else 1, name=job_name,
                       run_root=self.log_path or "fulmen_runs", slurm=self._slurm_options())
        return spec, space, trials

    def _slurm_options(self) -> SlurmOptions:
        extra = [(cmd, str(value)) for cmd, value, _ in self.slurm_commands]
        if self.email and (self.notify_on_end or self.notify_on_fail):
            kinds = ",".join(kind for kind, on in (("END", self.notify_on_end), ("FAIL", self.notify_on_fail)) if on)
            extra += [("mail-user", self.email), ("mail-type", kinds)]
        warning_s = max(1, int(self.minutes_to_checkpoint_before_walltime * 60))
        return SlurmOptions(time=self.job_time, mem=f"{self.memory_mb_per_node}M",
                            cpus_per_task=self.per_experiment_nb_cpus, signal=f"USR2@{warning_s}", extra=tuple(extra),
                            setup=tuple(f"module load {module}" for module in self.modules) + tuple(self.commands))


def _entry(script: str) -> str:
    """The script as the launcher names it: relative to the current folder when inside it (the snapshot's root)."""
    path = Path(os.path.realpath(script))
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
