"""Acceptance for issue 4 with real processes (gloo, CPU): 2-rank DDP under launch, torchrun and
``python script.py``; kill -9 of a rank; restarts; SIGUSR1 preemption and exact resume;
mismatched settings. Each run is bounded at 60 s."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fulmen.jobs import ports
from fulmen.jobs.exit_codes import CONFIGURATION_ERROR_EXIT_CODE, PREEMPTED_EXIT_CODE

from .conftest import SCRIPT, child_env, launch_cmd, processes_of_run, results, run, start, wait_for_step

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

SAMPLES = 64
STEPS_PER_EPOCH = 8  # 64 samples / 2 ranks / batch 4
EPOCHS = 2


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted 2-rank run under `launch`: the reference for every other run."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    run_dir, out = tmp / "run", tmp / "out"
    done = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out)),
               child_env(tmp))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"run_dir": run_dir, "out": out, "stderr": done.stderr, "results": results(out)}


def test_a_finished_run_leaves_no_heartbeats_and_no_empty_stack_files(uninterrupted: dict[str, Any]) -> None:
    run_dir = uninterrupted["run_dir"]
    assert (run_dir / "logs").is_dir()
    assert not (run_dir / "heartbeat").exists() and not (run_dir / "stacks").exists(), sorted(run_dir.iterdir())


def check_two_rank_run(out: Path, log_root: Path) -> list[dict[str, Any]]:
    r0, r1 = results(out)
    assert [(r["global_rank"], r["local_rank"], r["node_rank"], r["world_size"]) for r in (r0, r1)] == [
        (0, 0, 0, 2), (1, 1, 0, 2)]
    assert (r0["is_global_zero"], r1["is_global_zero"]) == (True, False)
    assert (out / "prepare_data.txt").read_text().splitlines() == ["0"]  # once (per node, one node)
    per_epoch = SAMPLES // 2
    for epoch in range(EPOCHS):
        shard0 = r0["seen"][epoch * per_epoch:(epoch + 1) * per_epoch]
        shard1 = r1["seen"][epoch * per_epoch:(epoch + 1) * per_epoch]
        assert not set(shard0) & set(shard1) and sorted(shard0 + shard1) == list(range(SAMPLES))
    assert r0["seen"][:per_epoch] != r0["seen"][per_epoch:2 * per_epoch]  # set_epoch: a new order each epoch
    assert r0["rank_value"] == r1["rank_value"] == 0.5  # sync_dist: mean of ranks 0 and 1
    assert r0["gathered"] == r1["gathered"] == [0.0, 1.0]  # all_gather
    assert r0["broadcast_pid"] == r1["broadcast_pid"]  # broadcast from rank 0
    assert r0["weights"] == r1["weights"]  # replicas identical
    assert r0["global_step"] == r1["global_step"] == EPOCHS * STEPS_PER_EPOCH
    # Only rank 0 writes: one logger version, one checkpoint (a second writer would add a version or file).
    versions = sorted(p.name for p in (log_root / "lightning_logs").iterdir())
    assert versions == ["version_0"]
    checkpoints = sorted(p.name for p in (log_root / "lightning_logs" / "version_0" / "checkpoints").iterdir())
    assert checkpoints == [f"epoch={EPOCHS - 1}-step={EPOCHS * STEPS_PER_EPOCH}.ckpt"]
    return [r0, r1]


def test_two_ranks_under_launch(uninterrupted: dict[str, Any]) -> None:
    check_two_rank_run(uninterrupted["out"], uninterrupted["run_dir"])
    run_dir = uninterrupted["run_dir"]
    assert (run_dir / "spec.json").is_file()
    assert {p.name for p in (run_dir / "logs").glob("rank_*.log")} == {"rank_0.log", "rank_1.log"}
    assert "rank 0 pid" in uninterrupted["stderr"] and "peak rss" in uninterrupted["stderr"]


def test_two_ranks_under_torchrun(tmp_path: Path, uninterrupted: dict[str, Any]) -> None:
    out = tmp_path / "out"
    port, _ = ports.choose_port(f"torchrun-{tmp_path}", environ={})
    try:
        done = run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                    str(port), str(SCRIPT), "--out", str(out)], child_env(tmp_path))
    finally:
        ports.release_port(port)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, _ = check_two_rank_run(out, out / "root")
    assert r0["weights"] == uninterrupted["results"][0]["weights"]


def test_two_ranks_from_plain_python_with_devices_2(tmp_path: Path, uninterrupted: dict[str, Any]) -> None:
    out = tmp_path / "out"
    env = child_env(tmp_path)
    env["FULMEN_RUN_DIR"] = str(tmp_path / "run")  # where the self-started launcher puts the run
    done = run([sys.executable, str(SCRIPT), "--devices", "2", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, _ = check_two_rank_run(out, tmp_path / "run")
    assert r0["weights"] == uninterrupted["results"][0]["weights"]


def test_kill_9_one_rank_stops_the_run_fast_and_leaves_nothing(tmp_path: Path) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = start(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out),
                            "--workers", "1", "--step-sleep", "0.3"), child_env(tmp_path))
    try:
        victim = wait_for_step(out, 1, 2, proc)
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - killed_at
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert elapsed < 5, f"launcher took {elapsed:.1f} s to exit after the kill"
    assert f"rank 1 (pid {victim['pid']}) failed first, with signal SIGKILL" in stderr
    assert processes_of_run(run_dir) == []


def test_max_restarts_finishes_with_the_uninterrupted_weights(tmp_path: Path, uninterrupted: dict[str, Any]) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "out"
    done = run(launch_cmd("--nproc-per-node", "2", "--max-restarts", "1", "--run-dir", str(run_dir), str(SCRIPT),
                          "--out", str(out), "--kill-rank", "1", "--kill-at-step", "3"), child_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "restarting all ranks (restart 1 of 1)" in done.stderr
    assert (run_dir / "logs" / "rank_1.attempt_0.log").is_file()
    assert results(out)[0]["weights"] == uninterrupted["results"][0]["weights"]


def test_sigusr1_to_one_rank_preempts_all_and_relaunch_is_exact(tmp_path: Path, uninterrupted: dict[str, Any]) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "out"
    env = child_env(tmp_path)
    proc = start(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out),
                            "--step-sleep", "0.3"), env)
    try:
        target = wait_for_step(out, 1, 1, proc)
        os.kill(target["pid"], signal.SIGUSR1)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    p0 = (out / "progress_rank0.json").read_text()
    p1 = (out / "progress_rank1.json").read_text()
    stopped = {json.loads(p0)["global_step"], json.loads(p1)["global_step"]}
    assert len(stopped) == 1  # both ranks stopped after the same step
    step = stopped.pop()
    assert 0 < step < STEPS_PER_EPOCH  # mid-epoch
    resume = sorted((run_dir / "checkpoints" / "resume").glob("*.ckpt"))
    assert len(resume) == 1 and f"step={step:012d}" in resume[0].name, resume  # written once, at that step
    assert not (out / "result_rank0.json").exists()

    done = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out)), env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(out)[0]["weights"] == uninterrupted["results"][0]["weights"]


def test_devices_mismatch_fails_before_process_group_init(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp_path / "run"), str(SCRIPT),
                          "--out", str(tmp_path / "out"), "--devices", "4"), child_env(tmp_path))
    assert done.returncode == CONFIGURATION_ERROR_EXIT_CODE
    assert "Trainer(devices=4)" in done.stderr and "one of 2 ranks per node" in done.stderr
    assert done.stderr.count("HINT") == 1  # one message, once: not once per rank (issue #14)
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60


def test_a_configuration_error_is_not_restarted(tmp_path: Path) -> None:
    """--max-restarts would fail the same way again: one message, exit 78, no restart."""
    done = run(launch_cmd("--nproc-per-node", "2", "--max-restarts", "2", "--run-dir", str(tmp_path / "run"),
                          str(SCRIPT), "--out", str(tmp_path / "out"), "--devices", "4"), child_env(tmp_path))
    assert done.returncode == CONFIGURATION_ERROR_EXIT_CODE, done.stderr[-3000:]
    assert "restarting all ranks" not in done.stderr
    assert done.stderr.count("Trainer(devices=4)") == 1


def test_sigterm_to_the_launcher_is_forwarded_and_ranks_save(tmp_path: Path) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = start(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out),
                            "--step-sleep", "0.3"), child_env(tmp_path))
    try:
        wait_for_step(out, 0, 1, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    assert "SIGTERM received: ranks saved the resume checkpoint" in stderr
    assert len(list((run_dir / "checkpoints" / "resume").glob("*.ckpt"))) == 1
    assert processes_of_run(run_dir) == []


def test_ranks_stop_when_the_launcher_is_killed(tmp_path: Path) -> None:
    # Ranks live in their own sessions; PR_SET_PDEATHSIG (set by the rank entry) sends them
    # SIGTERM when the launcher dies, so they save and exit instead of running on orphaned.
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = start(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out),
                            "--step-sleep", "0.3"), child_env(tmp_path))
    try:
        wait_for_step(out, 0, 1, proc)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 30
        while processes_of_run(run_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.kill()
    assert processes_of_run(run_dir) == []
    assert len(list((run_dir / "checkpoints" / "resume").glob("*.ckpt"))) == 1


def test_preempted_group_with_restarts_left_resumes_in_place(tmp_path: Path, uninterrupted: dict[str, Any]) -> None:
    # Exit 75 means "restart me": with --max-restarts the launcher restarts the group, which
    # resumes from the resume checkpoint the ranks just wrote and ends bit-equal.
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = start(launch_cmd("--nproc-per-node", "2", "--max-restarts", "1", "--run-dir", str(run_dir), str(SCRIPT),
                            "--out", str(out), "--step-sleep", "0.2"), child_env(tmp_path))
    try:
        target = wait_for_step(out, 0, 2, proc)
        os.kill(target["pid"], signal.SIGUSR1)
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "exited with exit code 75; restarting all ranks" in stderr
    assert "Resumed from " in (run_dir / "logs" / "rank_0.log").read_text()
    assert not (run_dir / "checkpoints").exists()  # the completed run dropped its resume checkpoint
    final = results(out)[0]
    assert 0 < len(final["seen"]) < EPOCHS * SAMPLES // 2  # the restarted attempt resumed, not started over
    assert final["weights"] == uninterrupted["results"][0]["weights"]
