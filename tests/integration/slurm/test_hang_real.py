"""A rank that hangs on SLURM (issue 16.6 on the SLURM path): ``launch --cluster slurm
--hang-timeout S`` gives every task the rank-side progress watchdog (no launcher watches SLURM
ranks), so the hung rank dumps its stacks into the run dir, names where it is stuck and exits
124, and the job ends instead of sleeping until its time limit."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.integration.slurm.conftest import fulmen_cli
from tests.integration.slurm.test_submit_real import job_id_from, only_run_dir, wait_until_final

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]
HANG_FIT = Path(__file__).resolve().parents[1] / "local" / "scripts" / "hang_fit.py"


def test_a_hung_rank_dumps_its_stack_names_its_frame_and_ends_the_job_with_124(
    project: Path, job_env: dict[str, str]
) -> None:
    shutil.copy(HANG_FIT, project / "hang_fit.py")
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nodes", "1", "--gpus", "2", "--time", "5",
                       "--hang-timeout", "3", "hang_fit.py", "--hang-rank", "1"], job_env, project)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = wait_until_final(job_id_from(proc.stderr), 180)
    run_dir = only_run_dir(project)
    log = (run_dir / "logs" / "rank_1.log").read_text()
    assert final.state == "FAILED", (final, log)
    assert "fulmen: rank 1 made no progress for" in log, log
    assert re.search(r"stuck in training_step at \S+/code/hang_fit\.py:\d+", log), log
    stacks = (run_dir / "stacks" / "rank_1.txt").read_text()
    assert "in training_step" in stacks, stacks
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert {"event": "failed", "rank": 1, "exit_code": 124}.items() <= next(
        e for e in events if e.get("event") == "failed" and e.get("rank") == 1).items(), events  # fmt: skip
