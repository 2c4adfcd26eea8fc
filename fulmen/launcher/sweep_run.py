"""Running a sweep: one sweep dir, one normal fulmen run per trial, K at a time on this machine.

Layout::

    fulmen_runs/<name>-sweep-<id>/sweep.json          the space and its trials (what --run-dir resumes)
    fulmen_runs/<name>-sweep-<id>/trial_0003/         trial 3's run dir (spec.json, logs/, result.json, ...)
    fulmen_runs/<name>-sweep-<id>/trial_0003/trial.json   its values, state and exit code
    fulmen_runs/<name>-sweep-<id>/trial_0003/console.log  what its launcher printed

Each trial is the user's launch with ``--run-dir trial_NNNN`` and the trial's values appended
to the script's arguments (``fulmen.sweep.trial``). Locally every trial runs in its own
launcher process (``python -c 'trial_main()'``, the spec handed over on stdin so ``--env``
values never touch the disk), because a local run owns its process: signal handlers, the
elastic agent, and torch's state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from fulmen.errors import FulmenError, LaunchError
from fulmen.jobs.records import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, write_private
from fulmen.jobs.rundir import new_run_id, run_dir_for, tail
from fulmen.jobs.spec import JobSpec
from fulmen.sweep.space import SweepSpace, Trial
from fulmen.sweep.trial import TRIAL_VARIABLE, merge_script_args, trial_environment

SWEEP_FILE = "sweep.json"
TRIAL_FILE = "trial.json"
CONSOLE_FILE = "console.log"
COMPLETED, FAILED, RUNNING = "COMPLETED", "FAILED", "RUNNING"
_POLL_SECONDS = 0.2
#: What a local trial's launcher process runs (its JobSpec arrives on stdin).
TRIAL_COMMAND = (sys.executable, "-c", "from fulmen.launcher.sweep_run import trial_main; trial_main()")


def trial_dir(sweep_dir: Path, index: int) -> Path:
    """``<sweep_dir>/trial_0003``: trial ``index``'s run dir."""
    return sweep_dir / f"trial_{index:04d}"


def sweep_dir_for(spec: JobSpec) -> Path:
    """``--run-dir`` when given (a resumed sweep), else ``<run_root>/<name>-sweep-<id>``."""
    return run_dir_for(spec, "sweep-" + new_run_id())


def pin_space(space: SweepSpace, sweep_dir: Path) -> SweepSpace:
    """The space this sweep runs: the stored one when resuming, with a seed fixed for random draws.

    A resumed sweep must regenerate exactly the trials it started with, so an unseeded random
    sweep gets its seed now and ``sweep.json`` keeps it. A different space for an existing sweep
    dir is refused: its finished trials would not belong to the new one.
    """
    stored = read_sweep(sweep_dir)
    if stored is None and (sweep_dir / "spec.json").exists():
        raise LaunchError(
            f"--run-dir {sweep_dir} is the run dir of a single run, not a sweep (it has spec.json, no {SWEEP_FILE}).\n"
            "HINT: give the sweep's folder (fulmen_runs/<name>-sweep-<id>), or drop --run-dir to start a new sweep."
        )
    if stored is None:
        if space.mode == "random" and space.seed is None:
            space = dataclasses.replace(space, seed=random.SystemRandom().randrange(2**31))
        return space
    stored_space = SweepSpace.from_dict(stored["space"])
    asked = space if space.seed is not None else dataclasses.replace(space, seed=stored_space.seed)
    if asked.to_dict() != stored_space.to_dict():
        raise LaunchError(
            f"--run-dir {sweep_dir} holds a sweep over {json.dumps(stored_space.to_dict())}, "
            f"but this command sweeps {json.dumps(asked.to_dict())}.\n"
            "HINT: resume with the same --sweep options, or drop --run-dir to start a new sweep."
        )
    return stored_space


def read_sweep(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's ``sweep.json``, or None when ``sweep_dir`` holds no sweep yet."""
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_sweep(sweep_dir: Path, spec: JobSpec, space: SweepSpace, trials: list[Trial]) -> None:
    """Create the sweep dir (0700) and write ``sweep.json``: the space, the trials, the launch."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    data = {
        "name": spec.job_name,
        "space": space.to_dict(),
        "trials": [{"index": t.index, "values": t.values, "dir": trial_dir(sweep_dir, t.index).name} for t in trials],
        "launch": dataclasses.replace(spec, run_dir=str(sweep_dir)).to_record(),
    }
    write_private(sweep_dir / SWEEP_FILE, json.dumps(data, indent=2) + "\n")


def trial_spec(spec: JobSpec, trial: Trial, sweep_dir: Path) -> JobSpec:
    """The user's launch for one trial: its own run dir, its values as arguments and as JSON."""
    env = tuple((key, value) for key, value in spec.env if key != TRIAL_VARIABLE)
    return dataclasses.replace(
        spec,
        run_dir=str(trial_dir(sweep_dir, trial.index)),
        args=tuple(merge_script_args(spec.args, trial)),
        env=(*env, (TRIAL_VARIABLE, trial_environment(trial, str(sweep_dir)))),
    )


def read_trial_state(sweep_dir: Path, index: int) -> dict[str, Any] | None:
    """Trial ``index``'s ``trial.json`` (values, state, exit code), or None before it ran."""
    path = trial_dir(sweep_dir, index) / TRIAL_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def trial_state(sweep_dir: Path, index: int) -> str:
    """PENDING before the trial ran, else its state: COMPLETED / FAILED / RUNNING locally; for a
    SLURM array element or a Kubernetes trial still queued or running, the scheduler's word (asked now)."""
    state = read_trial_state(sweep_dir, index)
    if state is None:
        return "PENDING"
    if state.get("job_id") and state.get("state") not in (COMPLETED, FAILED):
        if str(state["job_id"]).startswith("kubernetes://"):
            from fulmen.launcher.sweep_k8s import refresh_trial_state as refresh_k8s

            return refresh_k8s(sweep_dir, state)
        from fulmen.launcher.sweep_slurm import refresh_trial_state

        return refresh_trial_state(sweep_dir, state)
    return str(state.get("state"))


def write_trial_state(sweep_dir: Path, trial: Trial, state: str, exit_code: int | None = None,
                      job_id: str | None = None) -> None:
    """Write trial ``trial``'s ``trial.json`` (values, state, exit code; a SLURM element's job id)."""
    folder = trial_dir(sweep_dir, trial.index)
    folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    data = {"index": trial.index, "values": trial.values, "state": state, "exit_code": exit_code, "job_id": job_id}
    write_private(folder / TRIAL_FILE, json.dumps(data, indent=2) + "\n")


def device_slots(total: int, per_trial: int, visible: str | None) -> list[tuple[str, ...]]:
    """The GPU groups that concurrent local trials get: ``total // per_trial`` disjoint groups of
    ``per_trial`` ids, taken from ``CUDA_VISIBLE_DEVICES`` when it is set (else ``0..total-1``)."""
    ids = [part.strip() for part in visible.split(",") if part.strip()] if visible else [str(i) for i in range(total)]
    if not 1 <= per_trial <= total:
        raise LaunchError(f"--gpus-per-trial {per_trial} must be between 1 and --gpus {total}.\n"
                          f"HINT: --gpus {total} --gpus-per-trial {max(1, total // 2)}")
    if len(ids) < total:
        raise LaunchError(f"--gpus {total} asks for {total} GPUs, but CUDA_VISIBLE_DEVICES={visible} lists {len(ids)}.\n"
                          f"HINT: --gpus {len(ids)}, or widen CUDA_VISIBLE_DEVICES.")
    return [tuple(ids[i * per_trial:(i + 1) * per_trial]) for i in range(total // per_trial)]


def _gpu_plan(spec: JobSpec, gpus_per_trial: int | None, parallel: int) -> tuple[JobSpec, list[tuple[str, ...]] | None]:
    """``--gpus G --gpus-per-trial g``: each trial runs ``--gpus g`` on its own group, never shared."""
    if gpus_per_trial is None:
        return spec, None
    if spec.cluster != "local" or spec.gpus_per_node is None:
        raise LaunchError(
            "--gpus-per-trial splits this machine's --gpus between concurrent local trials"
            + (f"; on --cluster {spec.cluster} each trial has its own allocation" if spec.cluster != "local" else
               ", but no --gpus was given") + ".\nHINT: launch --gpus 8 --gpus-per-trial 2 --parallel 4 ... "
            "(on SLURM: --gpus g per trial)."
        )
    slots = device_slots(spec.gpus_per_node, gpus_per_trial, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if parallel > len(slots):
        raise LaunchError(
            f"--parallel {parallel} trials of {gpus_per_trial} GPU(s) would need {parallel * gpus_per_trial} GPUs, "
            f"but --gpus is {spec.gpus_per_node}.\nHINT: --parallel {len(slots)}"
        )
    return dataclasses.replace(spec, gpus_per_node=gpus_per_trial), slots


@dataclasses.dataclass
class _Running:
    trial: Trial
    process: subprocess.Popen[bytes]
    console: IO[bytes]
    started: float
    devices: tuple[str, ...] | None = None


def run_sweep(spec: JobSpec, space: SweepSpace, *, parallel: int = 1, dry_run: bool = False,
              wait: bool = False, gpus_per_trial: int | None = None) -> int:
    """``launch --sweep ...``: run every trial not COMPLETED yet, ``parallel`` at a time; the exit code.

    Locally: 0 when every trial completed; otherwise the exit code of the first failed trial
    (each failure is named with the tail of its console as it happens, and again at the end).
    On SLURM: one job array; 0 once submitted, or with ``wait`` the same answer as locally.
    On Kubernetes: one torchx job per trial (``sweep_k8s``), likewise.
    """
    if parallel < 1:
        raise LaunchError(f"--parallel must be >= 1 (trials at a time), got {parallel}.\nHINT: --parallel 2")
    if spec.cluster not in ("local", "slurm", "k8s"):
        raise LaunchError(
            f"--sweep runs on --cluster local, slurm or k8s; --cluster {spec.cluster} sweeps are not built yet.\n"
            "HINT: run the sweep with --cluster local, slurm or k8s, or launch each trial yourself."
        )
    spec, slots = _gpu_plan(spec, gpus_per_trial, parallel)
    sweep_dir = sweep_dir_for(spec)
    space = pin_space(space, sweep_dir)
    trials = space.generate()
    if spec.cluster == "k8s":
        from fulmen.launcher.sweep_k8s import run_k8s_sweep

        return run_k8s_sweep(spec, sweep_dir, space, trials, parallel=parallel, dry_run=dry_run, wait=wait)
    todo = [t for t in trials if trial_state(sweep_dir, t.index) != COMPLETED]
    if spec.cluster == "slurm":
        from fulmen.launcher.sweep_slurm import run_array

        return run_array(spec, sweep_dir, space, trials, todo, parallel=parallel, dry_run=dry_run, wait=wait)
    if dry_run:
        print(f"sweep {sweep_dir}: {len(trials)} trial(s), {len(todo)} to run, {parallel} at a time"
              + (f", GPU groups {' '.join(','.join(slot) for slot in slots)}" if slots else ""))
        for trial in todo:
            print(f"  {trial_dir(sweep_dir, trial.index).name}: {' '.join(trial_spec(spec, trial, sweep_dir).args)}")
        return 0
    write_sweep(sweep_dir, spec, space, trials)
    print(f"fulmen: sweep {sweep_dir}: {len(trials)} trial(s), {len(trials) - len(todo)} completed earlier, "
          f"running {len(todo)}, {parallel} at a time", flush=True)
    failed = _run_local_trials(spec, sweep_dir, todo, parallel, slots)
    return report(sweep_dir, trials, failed)


def _run_local_trials(spec: JobSpec, sweep_dir: Path, todo: list[Trial], parallel: int,
                      slots: list[tuple[str, ...]] | None = None) -> list[tuple[Trial, int]]:
    """Run ``todo`` with at most ``parallel`` trial launchers alive, each on a free GPU group when
    ``slots`` are given; the failed trials and their codes."""
    waiting, running, failed = list(todo), [], []
    free = list(slots) if slots else None
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                devices = free.pop(0) if free is not None else None
                running.append(_start_trial(spec, sweep_dir, waiting.pop(0), devices))
            time.sleep(_POLL_SECONDS)
            for item in [item for item in running if item.process.poll() is not None]:
                running.remove(item)
                if free is not None and item.devices is not None:
                    free.append(item.devices)
                code = _finish_trial(sweep_dir, item)
                if code != 0:
                    failed.append((item.trial, code))
    finally:
        for item in running:  # Ctrl-C or an error here: the trials still running stop with us
            item.process.terminate()
            item.process.wait()
            item.console.close()
            write_trial_state(sweep_dir, item.trial, FAILED, item.process.returncode)
    return failed


def _start_trial(spec: JobSpec, sweep_dir: Path, trial: Trial, devices: tuple[str, ...] | None = None) -> _Running:
    one = trial_spec(spec, trial, sweep_dir)
    env = dict(os.environ)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    write_trial_state(sweep_dir, trial, RUNNING)
    path = trial_dir(sweep_dir, trial.index) / CONSOLE_FILE
    console = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE), "wb")
    process = subprocess.Popen(list(TRIAL_COMMAND), stdin=subprocess.PIPE, stdout=console, stderr=subprocess.STDOUT,
                               env=env)
    assert process.stdin is not None
    process.stdin.write(json.dumps(one.to_dict()).encode())
    process.stdin.close()
    on = f" on GPU(s) {','.join(devices)}" if devices is not None else ""
    print(f"fulmen: {trial_dir(sweep_dir, trial.index).name} started ({trial.label()}){on}", flush=True)
    return _Running(trial, process, console, time.monotonic(), devices)


def _finish_trial(sweep_dir: Path, item: _Running) -> int:
    item.console.close()
    code = int(item.process.returncode)
    write_trial_state(sweep_dir, item.trial, COMPLETED if code == 0 else FAILED, code)
    name = trial_dir(sweep_dir, item.trial.index).name
    took = time.monotonic() - item.started
    if code == 0:
        print(f"fulmen: {name} COMPLETED in {took:.1f}s ({item.trial.label()})", flush=True)
    else:
        console = trial_dir(sweep_dir, item.trial.index) / CONSOLE_FILE
        print(f"fulmen: {name} FAILED with exit code {code} after {took:.1f}s ({item.trial.label()}); "
              f"the end of {console}:\n" + _indent(tail(console, 15)), file=sys.stderr, flush=True)
    return code


def report(sweep_dir: Path, trials: list[Trial], failed: list[tuple[Trial, int]]) -> int:
    if not failed:
        print(f"fulmen: sweep {sweep_dir}: all {len(trials)} trial(s) COMPLETED; "
              f"`fulmen sweep results {sweep_dir}` ranks them", flush=True)
        return 0
    failed.sort(key=lambda pair: pair[0].index)
    names = ", ".join(f"{trial_dir(sweep_dir, t.index).name} (exit {code}; {t.label()})" for t, code in failed)
    print(f"fulmen: sweep {sweep_dir}: {len(failed)} of {len(trials)} trial(s) FAILED: {names}\n"
          f"HINT: fix the cause, then rerun the same command with --run-dir {sweep_dir} to run only the trials "
          "that did not complete.", file=sys.stderr, flush=True)
    return failed[0][1]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (it printed nothing)"


def trial_main() -> None:
    """A trial's launcher process: the JobSpec (``to_dict``) on stdin, run through its backend."""
    from fulmen.launcher.backends import launch
    from fulmen.launcher.cli import exit_now

    try:
        code = launch(JobSpec.from_dict(json.loads(sys.stdin.read())))
    except FulmenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    exit_now(code)
