"""Acceptance: DDP training through `launch --cluster slurm`, preemption, time limits, exact resume.

Jobs train tests/integration/slurm/train_tiny.py (a few hundred CPU steps at most). The
reference weights (an uninterrupted run) are computed once per session and shared by the
xdist workers through a file lock. Measured latencies are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fulmen.jobs.records import read_record
from fulmen.slurm import commands
from tests.integration.slurm.conftest import fulmen_cli
from tests.integration.slurm.test_submit_real import job_id_from, only_run_dir, wait_for_line, wait_until_final

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("train_tiny.py")
# The resume tests: 2 nodes x 1 rank, 4 epochs of 12 steps.
RESUME_ARGS = ["--nodes", "2", "--devices", "1", "--epochs", "4"]


def submit(project: Path, env: dict[str, str], launch_args: list[str], script_args: list[str], wait: bool = False):
    shutil.copy(SCRIPT, project / "train_tiny.py")
    args = ["launch", "--cluster", "slurm", *launch_args, *(["--wait"] if wait else []), "train_tiny.py", *script_args]
    return fulmen_cli(args, env, project, timeout=600)


def starts(log_text: str) -> list[dict]:
    return [json.loads(line[len("START "):]) for line in log_text.splitlines() if line.startswith("START ")]


def steps(log_text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^STEP (\d+) at", log_text, re.M)]


def all_rank0_text(run_dir: Path) -> list[str]:
    """rank 0's log of every run, oldest first."""
    logs = run_dir / "logs"
    earlier = sorted(logs.glob("rank_0.attempt_*.log"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    return [p.read_text() for p in earlier] + [(logs / "rank_0.log").read_text()]


def assert_each_run_resumes_where_the_last_stopped(texts: list[str]) -> None:
    """Every run that reached fit starts at the last step finished before it (exact resume).

    A run whose signal came during start-up never reaches fit (no START line); it is skipped.
    """
    last_done = 0
    for text in texts:
        rank0_starts = [s for s in starts(text) if s["rank"] == 0]
        if rank0_starts:
            assert rank0_starts[0]["global_step"] == last_done, (last_done, rank0_starts[0])
        last_done = max([last_done, *steps(text)])


def restart_numbers(texts: list[str]) -> list[int]:
    """The restart count each run's rank entry reported, in order."""
    return [int(re.search(r"^fulmen: rank 0/\d+ .* restart (\d+) ", t, re.M).group(1)) for t in texts]


def load_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "final_weights.pt", map_location="cpu", weights_only=True)


def assert_bit_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


@pytest.fixture(scope="session")
def reference_weights(tmp_path_factory: pytest.TempPathFactory, slurm_cluster: str) -> dict:
    """Final weights of an uninterrupted RESUME_ARGS run (shared by xdist workers)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "slurm-reference-final_weights.pt"
    with FileLock(str(shared / "slurm-reference.lock"), timeout=600):
        if not out.exists():
            project = shared / "slurm-reference-project"
            project.mkdir(exist_ok=True)
            env = dict(os.environ, PYTHONUNBUFFERED="1", XDG_STATE_HOME=str(shared / "slurm-reference-state"))
            proc = submit(project, env, ["--nodes", "2", "--nproc-per-node", "1"], RESUME_ARGS, wait=True)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            shutil.copy(only_run_dir(project) / "final_weights.pt", out)
    return torch.load(out, map_location="cpu", weights_only=True)


def test_ddp_two_nodes_two_gpus_trains_and_reports(project: Path, job_env: dict[str, str]) -> None:
    proc = submit(project, job_env, ["--nodes", "2", "--gpus", "2"], ["--nodes", "2", "--devices", "2"], wait=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    layout = []
    for rank in range(4):
        (start,) = starts((run_dir / "logs" / f"rank_{rank}.log").read_text())
        layout.append((start["rank"], start["local_rank"], start["node_rank"], start["world_size"], start["node"]))
    assert [row[:4] for row in layout] == [(0, 0, 0, 4), (1, 1, 0, 4), (2, 0, 1, 4), (3, 1, 1, 4)]
    assert layout[0][4] == layout[1][4] != layout[2][4] == layout[3][4]
    rank0 = (run_dir / "logs" / "rank_0.log").read_text()
    losses = json.loads(re.search(r"^EPOCH_LOSSES (.*)$", rank0, re.M).group(1))
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.5, losses
    # Rank 0 wrote the checkpoints (ModelCheckpoint's default), into the run directory.
    ckpts = list((run_dir / "lightning_logs").glob("version_0/checkpoints/*.ckpt"))
    assert len(ckpts) == 1, list(run_dir.rglob("*.ckpt"))
    status = fulmen_cli(["status", job_id], job_env, project)
    assert "state: COMPLETED" in status.stdout, status.stdout + status.stderr
    logs = fulmen_cli(["logs", job_id, "--rank", "3"], job_env, project)
    assert '"rank": 3' in logs.stdout and '"node_rank": 1' in logs.stdout
    first_step = float(re.search(r"^STEP 1 at ([\d.]+)", rank0, re.M).group(1))
    print(f"submit-to-first-step latency (2 nodes x 2 ranks): {first_step - read_record(run_dir).submit_time:.1f}s")


@pytest.mark.timeout(600)
def test_usr2_mid_training_requeues_and_resumes_bit_equal(
    project: Path, job_env: dict[str, str], reference_weights: dict
) -> None:
    proc = submit(project, job_env, ["--nodes", "2", "--nproc-per-node", "1"], [*RESUME_ARGS, "--step-sleep", "0.3"])
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    wait_for_line(run_dir / "logs" / "rank_0.log", r"^STEP 8 at", 180)
    signalled = time.time()
    commands.cancel(job_id, signal="USR2")
    restarted = wait_for_line(run_dir / "logs" / "rank_0.log", r"restart 1 .*started at", 120)
    final = wait_until_final(job_id, 300)
    assert final.state == "COMPLETED", final
    print(f"signal-to-requeued latency (training job): {restarted - signalled:.1f}s")
    assert commands.job_state(job_id).restarts == 1
    texts = all_rank0_text(run_dir)
    assert len(texts) == 2
    assert [s["restart"] for s in starts(texts[1]) if s["rank"] == 0] == [1]
    assert_each_run_resumes_where_the_last_stopped(texts)
    assert "DONE global_step=48" in texts[-1]
    assert_bit_equal(load_weights(run_dir), reference_weights)
    # The resumed run kept logging into the same TensorBoard version: one events file per run.
    events = sorted(p.parent.name for p in (run_dir / "lightning_logs").rglob("events.out.tfevents.*"))
    assert events == ["version_0", "version_0"], events


@pytest.mark.timeout(600)
def test_low_job_preempted_by_high_job_finishes_with_same_weights(
    project: Path, job_env: dict[str, str], reference_weights: dict
) -> None:
    proc = submit(project, job_env, ["--nodes", "2", "--nproc-per-node", "1", "--partition", "low", "--exclusive"],
                  [*RESUME_ARGS, "--step-sleep", "0.3"])
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    wait_for_line(run_dir / "logs" / "rank_0.log", r"^STEP 6 at", 180)
    # The high job asks for exactly the low job's (exclusive) nodes: only preempting it frees
    # them, whatever other tests run on the third node meanwhile.
    low_nodes = commands.show_job(job_id)["NodeList"]
    high = subprocess.run(
        ["sbatch", "--parsable", "-p", "high", "-N", "2", "-w", low_nodes, "--exclusive", "-t", "2",
         "-o", "/dev/null", "--wrap", "sleep 2"], capture_output=True, text=True, check=True,
    ).stdout.strip()
    final = wait_until_final(job_id, 400)
    assert final.state == "COMPLETED", final
    assert commands.job_state(job_id).restarts >= 1
    assert wait_until_final(high, 60).state == "COMPLETED"
    texts = all_rank0_text(run_dir)
    assert len(texts) >= 2
    assert_each_run_resumes_where_the_last_stopped(texts)
    assert_bit_equal(load_weights(run_dir), reference_weights)


@pytest.mark.timeout(900)
def test_time_limit_one_minute_is_signalled_requeued_and_finishes(project: Path, job_env: dict[str, str]) -> None:
    # 6 epochs x 24 steps x 0.45 s = 65 s of work under a 1-minute limit. slurmctld checks time
    # limits every 30 s and sends --signal=SIG@N once the time left is under about N + 30 s
    # (measured): the default USR2@90 comes at the first check, 0-30 s into a run, which leaves
    # little training after start-up; USR1@10 comes 20-50 s in, still 10+ s before the kill.
    proc = submit(project, job_env, ["--nproc-per-node", "1", "--time", "1", "--signal", "USR1@10",
                                     "--max-requeues", "20"], ["--epochs", "6", "--step-sleep", "0.45"])
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    final = wait_until_final(job_id, 840)
    assert final.state == "COMPLETED", final
    texts = all_rank0_text(run_dir)
    assert len(texts) >= 2, "expected at least one requeue"
    assert restart_numbers(texts) == list(range(len(texts)))
    assert_each_run_resumes_where_the_last_stopped(texts)
    assert "DONE global_step=144" in texts[-1]
    assert commands.job_state(job_id).restarts == len(texts) - 1
    assert all("Traceback" not in t for t in texts), "a run ended with a traceback"


def test_allocation_mismatch_fails_fast_with_a_hint(project: Path, job_env: dict[str, str]) -> None:
    # Two tasks per node, but the script asks Trainer(devices=1): an error before any rendezvous.
    started = time.monotonic()
    proc = submit(project, job_env, ["--nproc-per-node", "2"], ["--devices", "1"], wait=True)
    assert proc.returncode != 0
    assert time.monotonic() - started < 120
    log = (only_run_dir(project) / "logs" / "rank_0.log").read_text()
    assert "Trainer(devices=1)" in log and "HINT" in log, log[-2000:]


@pytest.mark.timeout(600)
def test_past_max_requeues_a_resubmission_with_run_dir_continues(
    project: Path, job_env: dict[str, str], reference_weights: dict
) -> None:
    launch_args = ["--nodes", "2", "--nproc-per-node", "1", "--max-requeues", "0"]
    proc = submit(project, job_env, launch_args, [*RESUME_ARGS, "--step-sleep", "0.3"])
    first_job = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    wait_for_line(run_dir / "logs" / "rank_0.log", r"^STEP 8 at", 180)
    commands.cancel(first_job, signal="USR2")
    final = wait_until_final(first_job, 120)
    assert (final.state, final.exit_code) == ("FAILED", "75:0")  # stopped, checkpointed, not requeued
    proc = submit(project, job_env, [*launch_args, "--run-dir", str(run_dir)], RESUME_ARGS, wait=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert job_id_from(proc.stderr) != first_job
    texts = all_rank0_text(run_dir)
    assert len(texts) == 2
    assert_each_run_resumes_where_the_last_stopped(texts)
    assert_bit_equal(load_weights(run_dir), reference_weights)
