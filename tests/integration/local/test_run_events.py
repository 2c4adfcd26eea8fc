"""The run's event log as a user reads it (`fulmen events`), after a restart and after a resume."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from tests.integration.local.conftest import SCRIPT, child_env, launch_cmd, run, start, wait_for_step

pytestmark = pytest.mark.integration


def fulmen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fulmen.launcher", *args]


def logged(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_a_killed_rank_and_the_restart_are_in_the_events(tmp_path: Path) -> None:
    run_dir, out, env = tmp_path / "run", tmp_path / "out", child_env(tmp_path)
    done = run(launch_cmd("--nproc-per-node", "2", "--max-restarts", "1", "--run-dir", str(run_dir), str(SCRIPT),
                          "--out", str(out), "--kill-rank", "1", "--kill-at-step", "3"), env)
    assert done.returncode == 0, done.stderr[-3000:]
    kinds = [e["event"] for e in logged(run_dir)]
    assert kinds[0] == "submitted" and kinds[-1] == "finished", kinds
    failed = next(e for e in logged(run_dir) if e["event"] == "failed")
    assert (failed["rank"], failed["exit_code"]) == (1, -signal.SIGKILL)
    assert kinds.index("failed") < kinds.index("restarted") < len(kinds) - 1 - kinds[::-1].index("started")
    restarted = next(e for e in logged(run_dir) if e["event"] == "restarted")
    assert (restarted["count"], restarted["limit"]) == (1, 1)
    shown = run(fulmen_cmd("events", str(run_dir)), env)
    assert shown.returncode == 0, shown.stderr
    assert "failed: rank 1 exited first with exit code -9" in shown.stdout
    assert "restarted by launcher (1 of 1)" in shown.stdout
    status = run(fulmen_cmd("status", str(run_dir), "--json"), env)
    summary = json.loads(status.stdout)
    assert summary["attempts"] == 2 and summary["outcome"]["event"] == "finished", summary


def test_a_preempted_and_relaunched_run_resumes_with_0_steps_redone(tmp_path: Path) -> None:
    run_dir, out, env = tmp_path / "run", tmp_path / "out", child_env(tmp_path)
    proc = start(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out),
                            "--step-sleep", "0.3"), env)
    try:
        target = wait_for_step(out, 1, 1, proc)
        os.kill(target["pid"], signal.SIGUSR1)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE
    stopped = next(e for e in logged(run_dir) if e["event"] == "stopped")
    signalled = [e for e in logged(run_dir) if e["event"] == "signal"]
    assert stopped["exit_code"] == PREEMPTED_EXIT_CODE and [e["rank"] for e in signalled] == [1], signalled
    done = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(run_dir), str(SCRIPT), "--out", str(out)), env)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = next(e for e in logged(run_dir) if e["event"] == "resumed")
    assert resumed["step"] == stopped["step"] and resumed["steps_redone"] == 0, resumed
    shown = run(fulmen_cmd("events", str(run_dir)), env)
    assert f"resumed from step {stopped['step']}" in shown.stdout and "0 steps redone" in shown.stdout, shown.stdout
    status = run(fulmen_cmd("status", str(run_dir)), env)
    assert "attempt:     2" in status.stdout and "preemption(s)" in status.stdout, status.stdout
