"""What rank detection makes of a real batch shell and of real srun tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.slurm.test_submit_real import wait_until_final

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

PROBE = (
    "import json, os; from fulmen.runtime.cluster import detect; i = detect(os.environ); "
    "print(json.dumps(dict(where=os.environ.get('WHERE'), source=i.source, rank=i.global_rank, "
    "world=i.world_size, master=i.master_addr, node=os.environ['SLURMD_NODENAME'])), flush=True)"
)


def test_batch_shell_is_single_and_srun_tasks_are_ranks(tmp_path: Path, slurm_cluster: str) -> None:
    repo = Path(__file__).resolve().parents[3]
    script = tmp_path / "probe.sbatch"
    out = tmp_path / "out.txt"
    script.write_text(
        "#!/bin/bash\n"
        f"export PYTHONPATH={repo}\n"
        f"WHERE=batch {sys.executable} -c \"{PROBE}\"\n"
        f"WHERE=task srun {sys.executable} -c \"{PROBE}\"\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    job_id = subprocess.run(
        ["sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=2", "-t", "2", "-o", str(out), str(script)],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()
    assert wait_until_final(job_id, 120).state == "COMPLETED", out.read_text() if out.exists() else ""
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    batch = [r for r in rows if r["where"] == "batch"]
    tasks = sorted((r for r in rows if r["where"] == "task"), key=lambda r: r["rank"])
    # The batch shell has SLURM_NTASKS=4 and SLURM_PROCID=0 but is one process.
    assert [(r["source"], r["world"]) for r in batch] == [("single", 1)]
    assert [(r["source"], r["rank"], r["world"]) for r in tasks] == [("slurm", k, 4) for k in range(4)]
    assert {r["master"] for r in tasks} == {tasks[0]["node"]}
