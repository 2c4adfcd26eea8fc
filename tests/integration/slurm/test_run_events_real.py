"""Acceptance (real cluster): a job preempted twice tells its story in `fulmen events` / `fulmen status`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fulmen.slurm import commands
from tests.integration.slurm.conftest import fulmen_cli
from tests.integration.slurm.test_submit_real import job_id_from, only_run_dir, wait_for_line, wait_until_final
from tests.integration.slurm.test_training_real import RESUME_ARGS, submit

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_two_usr2_preemptions_show_three_attempts_and_exact_resumes(project: Path, job_env: dict[str, str]) -> None:
    proc = submit(project, job_env, ["--nodes", "2", "--nproc-per-node", "1"], [*RESUME_ARGS, "--step-sleep", "0.3"])
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    rank0 = run_dir / "logs" / "rank_0.log"
    wait_for_line(rank0, r"^STEP 8 at", 180)
    commands.cancel(job_id, signal="USR2")
    wait_for_line(rank0, r"restart 1 .*started at", 120)
    wait_for_line(rank0, r"^STEP 20 at", 180)
    commands.cancel(job_id, signal="USR2")
    wait_for_line(rank0, r"restart 2 .*started at", 120)
    final = wait_until_final(job_id, 300)
    assert final.state == "COMPLETED", final

    shown = fulmen_cli(["events", job_id, "--json"], job_env, project)
    logged = [json.loads(line) for line in shown.stdout.splitlines()]
    kinds = [e["event"] for e in logged]
    assert kinds.count("submitted") == 1 and kinds.count("started") == 3, kinds
    stops = [e for e in logged if e["event"] == "stopped"]
    resumes = [e for e in logged if e["event"] == "resumed"]
    assert [e["step"] for e in resumes] == [e["step"] for e in stops] and len(stops) == 2, (stops, resumes)
    assert [e["steps_redone"] for e in resumes] == [0, 0]
    assert [e["count"] for e in logged if e["event"] == "requeued"] == [1, 2]
    assert kinds[-1] == "finished", kinds
    assert {e["signal"] for e in logged if e["event"] == "signal"} == {"SIGUSR2"}

    text = fulmen_cli(["events", job_id], job_env, project).stdout
    assert text.count("0 steps redone") == 2 and "requeued by fulmen (rank 0)" in text, text
    status = json.loads(fulmen_cli(["status", job_id, "--json"], job_env, project).stdout)
    assert (status["attempts"], status["preemptions"], status["steps_redone"]) == (3, 2, 0), status
    assert status["step"] == status["total"] == 48, status
    print(fulmen_cli(["status", job_id], job_env, project).stdout)
    print(text)
