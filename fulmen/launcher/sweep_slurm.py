"""A sweep on ``--cluster slurm``: the trials not COMPLETED as ONE job array (``fulmen.slurm.array``).

Each trial's ``trial.json`` keeps its element's job id (``A_3``); its state is SLURM's, asked
through ``sacct`` while the element is not over, and kept once it is (COMPLETED, or FAILED with
SLURM's word in ``slurm_state``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from fulmen.jobs.records import write_private
from fulmen.jobs.rundir import rank_log_path, tail
from fulmen.jobs.spec import JobSpec
from fulmen.launcher.sweep_run import (
    COMPLETED,
    FAILED,
    TRIAL_FILE,
    report,
    trial_dir,
    trial_spec,
    trial_state,
    write_sweep,
    write_trial_state,
)
from fulmen.slurm import commands
from fulmen.slurm.array import array_dryrun, submit_array
from fulmen.sweep.space import SweepSpace, Trial

POLL_INTERVAL_S = 2.0


def run_array(spec: JobSpec, sweep_dir: Path, space: SweepSpace, trials: list[Trial], todo: list[Trial], *,
              parallel: int, dry_run: bool, wait: bool) -> int:
    """Submit ``todo`` as one array, ``parallel`` elements at a time; with ``wait``, follow it."""
    if not todo:
        print(f"fulmen: sweep {sweep_dir}: all {len(trials)} trial(s) COMPLETED earlier; nothing to submit")
        return 0
    request = array_dryrun([trial_spec(spec, trial, sweep_dir) for trial in todo], sweep_dir, parallel)
    if dry_run:
        print(request.render(), end="")
        for trial in todo:
            print(f"# {trial_dir(sweep_dir, trial.index).name}: {' '.join(trial_spec(spec, trial, sweep_dir).args)}")
        return 0
    write_sweep(sweep_dir, spec, space, trials)
    job_ids = submit_array(request)
    for trial, job_id in zip(todo, job_ids):
        write_trial_state(sweep_dir, trial, "SUBMITTED", job_id=job_id)
    array_id = job_ids[0].split("_")[0]
    print(f"fulmen: sweep {sweep_dir}: submitted {len(todo)} of {len(trials)} trial(s) as SLURM job array "
          f"{array_id} ({len(trials) - len(todo)} completed earlier), {parallel} at a time\n"
          f"  fulmen sweep results {sweep_dir}   scancel {array_id}", file=sys.stderr, flush=True)
    return _wait_for_trials(sweep_dir, trials, todo) if wait else 0


def _wait_for_trials(sweep_dir: Path, trials: list[Trial], todo: list[Trial]) -> int:
    waiting = list(todo)
    while waiting:
        time.sleep(POLL_INTERVAL_S)
        waiting = [trial for trial in waiting if trial_state(sweep_dir, trial.index) not in (COMPLETED, FAILED)]
    failed = []
    for trial in todo:
        state = json.loads((trial_dir(sweep_dir, trial.index) / TRIAL_FILE).read_text())
        if state["state"] == FAILED:
            failed.append((trial, int(state.get("exit_code") or 1)))
            log = rank_log_path(trial_dir(sweep_dir, trial.index), 0)
            print(f"fulmen: {trial_dir(sweep_dir, trial.index).name} (job {state['job_id']}) FAILED: "
                  f"{state.get('slurm_state')}; the end of {log}:\n{tail(log, 15)}", file=sys.stderr, flush=True)
    return report(sweep_dir, trials, failed)


def refresh_trial_state(sweep_dir: Path, state: dict[str, Any]) -> str:
    """The element's state from SLURM now; once final it is written into ``trial.json``."""
    job = commands.job_state(str(state["job_id"]))
    if not job.is_final:
        return job.state
    live = commands.squeue_state(str(state["job_id"]))  # sacct may say PREEMPTED while it is queued again
    if live is not None and not live.is_final:
        return live.state
    word = COMPLETED if job.state == COMPLETED else FAILED
    code = (job.exit_code or "").split(":")[0]
    state.update(state=word, slurm_state=job.state, exit_code=int(code) if code.isdigit() else None)
    path = trial_dir(sweep_dir, int(state["index"])) / TRIAL_FILE
    write_private(path, json.dumps(state, indent=2) + "\n")
    return word

