"""Acceptance (real cluster): a job preempted twice tells its story in `fulmen events` / `fulmen status`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fulmen.slurm import commands
from tests.integration.slurm.conftest import fulmen_cli
from tests.integration.slurm.test_submit_real import job_id_from, only_run_dir, wait_for_line, wait_until_final
from tests.integration.slurm.test_training_real import RESUME_ARGS, submit
from tests.jobs.test_run_report import PageParser

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_a_usr2_and_a_partition_preemption_show_three_attempts_exact_resumes_and_the_report_matches(
    project: Path, job_env: dict[str, str]
) -> None:
    proc = submit(project, job_env, ["--nodes", "2", "--nproc-per-node", "1", "--partition", "low", "--exclusive"],
                  [*RESUME_ARGS, "--step-sleep", "0.3"])
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_from(proc.stderr)
    run_dir = only_run_dir(project)
    rank0 = run_dir / "logs" / "rank_0.log"
    wait_for_line(rank0, r"^STEP 8 at", 180)
    commands.cancel(job_id, signal="USR2")
    wait_for_line(rank0, r"restart 1 .*started at", 120)
    wait_for_line(rank0, r"^STEP 20 at", 180)
    # a high-partition job on exactly the low job's (exclusive) nodes: only preempting it frees them
    low_nodes = commands.show_job(job_id)["NodeList"]
    high = subprocess.run(["sbatch", "--parsable", "-p", "high", "-N", "2", "-w", low_nodes, "--exclusive", "-t", "2",
                           "-o", "/dev/null", "--wrap", "sleep 2"], capture_output=True, text=True, check=True).stdout.strip()
    final = wait_until_final(job_id, 400)
    assert final.state == "COMPLETED", final
    assert wait_until_final(high, 60).state == "COMPLETED"

    shown = fulmen_cli(["events", job_id, "--json"], job_env, project)
    logged = [json.loads(line) for line in shown.stdout.splitlines()]
    kinds = [e["event"] for e in logged]
    # the USR2 and the high job make 3 attempts; SLURM may start the requeued low job once more on
    # those nodes before the high job gets them, and preempt it again: one more, told the same way
    starts = kinds.count("started")
    assert kinds.count("submitted") == 1 and starts >= 3, "\n".join(map(str, logged))
    stops = [e for e in logged if e["event"] == "stopped"]
    resumes = [e for e in logged if e["event"] == "resumed"]
    assert [e["step"] for e in resumes] == [e["step"] for e in stops] and len(stops) == starts - 1, (stops, resumes)
    assert {e["steps_redone"] for e in resumes} == {0}
    assert [e["count"] for e in logged if e["event"] == "requeued"] == list(range(1, starts))
    assert kinds[-1] == "finished", kinds
    assert [e["signal"] for e in logged if e["event"] == "signal"][0] == "SIGUSR2"

    text = fulmen_cli(["events", job_id], job_env, project).stdout
    assert text.count("0 steps redone") == starts - 1 and "requeued by fulmen (rank 0)" in text, text
    status = json.loads(fulmen_cli(["status", job_id, "--json"], job_env, project).stdout)
    assert (status["attempts"], status["preemptions"], status["steps_redone"]) == (starts, starts - 1, 0), status
    assert status["step"] == status["total"] == 48, status
    _assert_report_matches(project, job_env, job_id, run_dir, stops)
    print(fulmen_cli(["status", job_id], job_env, project).stdout)
    print(text)


def _assert_report_matches(project: Path, job_env: dict[str, str], job_id: str, run_dir: Path,
                           stops: list[dict]) -> None:
    """``fulmen report``: a row per attempt, each resume from the step the last one stopped at with 0
    redone, and the curve marks both stops and both resumes at their steps."""
    written = fulmen_cli(["report", job_id], job_env, project)
    assert written.returncode == 0 and written.stdout.strip() == f"wrote {run_dir / 'report.html'}", written.stderr
    page = (run_dir / "report.html").read_text()
    parsed = PageParser()
    parsed.feed(page)
    header, *rows = parsed.rows["attempts"]
    assert len(rows) == len(stops) + 1
    redone = [row[header.index("steps redone")] for row in rows]
    assert redone == ["-", *(f"0 (from step {stop['step']})" for stop in stops)], redone
    assert [row[header.index("end")].split(" with exit code ")[-1][:2] for row in rows[:-1]] == ["75"] * len(stops)
    assert parsed.figures["curve-plot"] and parsed.figures["attempts-plot"]
    for stop in stops:
        assert f">stopped {stop['step']}<" in page and f">resumed {stop['step']}<" in page
