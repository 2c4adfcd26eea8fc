"""A sweep on ``--cluster k8s``: every trial not finished yet is its own torchx (Volcano) job.

Each trial runs the user's launch with the same image, its own run dir (``trial_NNNN`` in the
sweep dir here; ``<sweep>/trial_NNNN`` under the pods' run root) and its values as script
arguments and as ``FULMEN_SWEEP_TRIAL`` JSON. Its ``trial.json`` keeps the torchx handle as
``job_id``; its state is torchx's, asked through the runner while the job is not over, and kept
once it is (COMPLETED, or FAILED with torchx's word in ``k8s_state``).

``--parallel`` is refused: nothing of fulmen stays alive to hold trials back, so how many run
at a time is the Volcano queue's business (its capacity), not a launcher option.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from fulmen.errors import LaunchError
from fulmen.jobs.exit_codes import CANCELLED_EXIT_CODE
from fulmen.jobs.records import write_private
from fulmen.jobs.rundir import new_run
from fulmen.jobs.spec import JobSpec
from fulmen.launcher.sweep_run import (
    COMPLETED,
    FAILED,
    TRIAL_FILE,
    read_trial_state,
    report,
    trial_dir,
    trial_spec,
    trial_state,
    write_sweep,
    write_trial_state,
)
from fulmen.sweep.space import SweepSpace, Trial
from fulmen.sweep.trial import TRIAL_VARIABLE, trial_environment

#: torchx states after which the job does not change, and the sweep's word for each.
FINAL = {"SUCCEEDED": COMPLETED, "FAILED": FAILED, "CANCELLED": FAILED}
#: torchx states of a job that may still run: such a trial is never submitted twice.
LIVE = frozenset({"UNSUBMITTED", "SUBMITTED", "PENDING", "RUNNING"})
POLL_INTERVAL_S = 5.0


def check_parallel(parallel: int) -> None:
    """Refuse ``--parallel K`` (K > 1): fulmen cannot hold Kubernetes trials back."""
    if parallel != 1:
        raise LaunchError(
            f"--parallel {parallel}: on --cluster k8s every trial is submitted at once as its own Volcano job, and "
            "no fulmen process stays behind to start trials one batch at a time.\n"
            "HINT: drop --parallel; limit concurrent trials with the Volcano queue's capacity (--queue QUEUE), "
            "or run the sweep with --cluster slurm (--parallel becomes the array's %K)."
        )


def trial_pod_name(sweep_dir: Path, index: int) -> str:
    """``<sweep>/trial_NNNN``: the trial's folder under the pods' run root."""
    return f"{sweep_dir.name}/{trial_dir(sweep_dir, index).name}"


def k8s_trial_spec(spec: JobSpec, trial: Trial, sweep_dir: Path) -> JobSpec:
    """``trial_spec`` with the sweep dir in ``FULMEN_SWEEP_TRIAL`` as the pods see it."""
    from fulmen.launcher.torchx_appdef import pod_run_dir

    one = trial_spec(spec, trial, sweep_dir)
    env = tuple((key, value) for key, value in one.env if key != TRIAL_VARIABLE)
    pod_sweep = pod_run_dir(spec, sweep_dir.name)
    return dataclasses.replace(one, env=(*env, (TRIAL_VARIABLE, trial_environment(trial, pod_sweep))))


def run_k8s_sweep(spec: JobSpec, sweep_dir: Path, space: SweepSpace, trials: list[Trial], *,
                  parallel: int, dry_run: bool, wait: bool) -> int:
    """Submit every trial that is neither COMPLETED nor still live; with ``wait``, follow them."""
    from fulmen.launcher.backends import submit_or_clean_up
    from fulmen.launcher.torchx import TorchxBackend

    check_parallel(parallel)
    states = {trial.index: trial_state(sweep_dir, trial.index) for trial in trials}
    # a trial never submitted reads PENDING too, which is also a torchx state: its record decides
    held = [t for t in trials if read_trial_state(sweep_dir, t.index) is not None and states[t.index] in LIVE | {"UNKNOWN"}]
    todo = [t for t in trials if states[t.index] != COMPLETED and t not in held]
    left = [f"{trial_dir(sweep_dir, t.index).name} ({states[t.index]})" for t in held]
    if left:
        print(f"fulmen: not resubmitted, still live or of unknown state: {', '.join(left)}", file=sys.stderr)
    if not todo:
        print(f"fulmen: sweep {sweep_dir}: no trial to submit ({len(trials)} trial(s), "
              f"{sum(state == COMPLETED for state in states.values())} COMPLETED)")
        return 0
    backend = TorchxBackend("k8s")
    requests = []
    for trial in todo:
        one = k8s_trial_spec(spec, trial, sweep_dir)
        requests.append(backend.request_for(one, new_run(one), pod_name=trial_pod_name(sweep_dir, trial.index)))
    if dry_run:
        for trial, request in zip(todo, requests):
            print(f"# {trial_dir(sweep_dir, trial.index).name}: {' '.join(request.spec.args)}")
            print(request.render().rstrip("\n"))
        return 0
    write_sweep(sweep_dir, spec, space, trials)
    for done, (trial, request) in enumerate(zip(todo, requests)):
        try:
            submitted = submit_or_clean_up(backend, request)
        except Exception as exc:  # the kubernetes client raises many unrelated types
            raise LaunchError(
                f"Submitting {trial_dir(sweep_dir, trial.index).name} failed ({type(exc).__name__}: {exc}); "
                f"{done} of {len(todo)} trial(s) were submitted before it.\n"
                f"HINT: check that kubectl reaches the cluster (`kubectl get vcjob -A`), then rerun with "
                f"--run-dir {sweep_dir}: only the trials not submitted yet are submitted."
            ) from exc
        write_trial_state(sweep_dir, trial, "SUBMITTED", job_id=submitted.job_id)
    print(f"fulmen: sweep {sweep_dir}: submitted {len(todo)} of {len(trials)} trial(s) as Kubernetes jobs\n"
          f"  fulmen status {sweep_dir}   fulmen sweep results {sweep_dir}", file=sys.stderr, flush=True)
    return _wait_for_trials(sweep_dir, trials, todo) if wait else 0


def _wait_for_trials(sweep_dir: Path, trials: list[Trial], todo: list[Trial]) -> int:
    waiting = list(todo)
    while waiting:
        waiting = [trial for trial in waiting if trial_state(sweep_dir, trial.index) not in (COMPLETED, FAILED)]
        if waiting:
            time.sleep(POLL_INTERVAL_S)
    failed = []
    for trial in todo:
        state = json.loads((trial_dir(sweep_dir, trial.index) / TRIAL_FILE).read_text())
        if state["state"] == FAILED:
            failed.append((trial, int(state.get("exit_code") or 1)))
    return report(sweep_dir, trials, failed)


def refresh_trial_state(sweep_dir: Path, state: dict[str, Any]) -> str:
    """The trial's job state from torchx now; once final it is written into ``trial.json``.

    UNKNOWN when the cluster cannot be asked (the error is printed): ``fulmen sweep results``
    still lists the other facts, and a resumed sweep does not resubmit such a trial.
    """
    from fulmen.launcher import torchx_jobs

    folder = trial_dir(sweep_dir, int(state["index"]))
    try:
        word = torchx_jobs.status_of(folder)
    except LaunchError as exc:
        print(f"fulmen: {folder.name}: {exc}", file=sys.stderr)
        return "UNKNOWN"
    if word not in FINAL:
        return word
    code = {"SUCCEEDED": 0, "FAILED": 1}.get(word, CANCELLED_EXIT_CODE)
    state.update(state=FINAL[word], k8s_state=word, exit_code=code)
    write_private(folder / TRIAL_FILE, json.dumps(state, indent=2) + "\n")
    return FINAL[word]
