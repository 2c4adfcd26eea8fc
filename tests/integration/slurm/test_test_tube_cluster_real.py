"""test_tube's ``SlurmCluster.optimize_parallel_cluster_cpu`` on the real cluster: ONE job array."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.slurm.test_submit_real import wait_until_final

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]

SEARCH = """\
import json, os
from pathlib import Path
from fulmen.launcher.test_tube_cluster import SlurmCluster
from fulmen.sweep import HyperOptArgumentParser

parser = HyperOptArgumentParser(strategy="grid_search")
parser.opt_list("--lr", type=float, default=0.1, options=[0.1, 0.01, 0.001], tunable=True)
parser.add_argument("--notes", required=True)
hparams = parser.parse_args()


def train(hparams, cluster):
    note = {"lr": hparams.lr, "trial": cluster.hpc_exp_number, "job": os.environ.get("SLURM_JOB_ID")}
    Path(hparams.notes, f"trial_{cluster.hpc_exp_number}.json").write_text(json.dumps(note))


cluster = SlurmCluster(hyperparam_optimizer=hparams, log_path="tt_runs", python_cmd="python3")
cluster.job_time = "5:00"
cluster.max_parallel = 2
cluster.optimize_parallel_cluster_cpu(train, nb_trials=3, job_name="tt_search")
print("submitted")
"""


def test_test_tube_search_submits_one_array_and_each_trial_gets_its_hparams(
    project: Path, job_env: dict[str, str]
) -> None:
    (project / "search.py").write_text(SEARCH)
    notes = project / "notes"
    notes.mkdir()
    proc = subprocess.run([sys.executable, "search.py", "--notes", str(notes)], cwd=project, env=job_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "submitted" in proc.stdout, proc.stdout + proc.stderr
    (sweep_dir,) = (project / "tt_runs").iterdir()
    assert sweep_dir.name.startswith("tt_search-sweep-")
    ids = [json.loads((sweep_dir / f"trial_{i:04d}" / "trial.json").read_text())["job_id"] for i in range(3)]
    array_id = ids[0].split("_")[0]
    try:
        assert ids == [f"{array_id}_{i}" for i in range(3)]  # one sbatch for the search
        assert "submitted 3 of 3 trial(s) as SLURM job array" in proc.stderr
        for job_id in ids:
            assert wait_until_final(job_id, 240).state == "COMPLETED"
    finally:
        subprocess.run(["scancel", array_id], check=False)
    written = {i: json.loads((notes / f"trial_{i}.json").read_text()) for i in range(3)}
    assert [(written[i]["lr"], written[i]["trial"]) for i in range(3)] == [(0.1, 0), (0.01, 1), (0.001, 2)]
    deadline = time.monotonic() + 30  # result-less trials: the state comes from sacct
    status = {}
    while time.monotonic() < deadline:
        status = json.loads(subprocess.run([sys.executable, "-m", "fulmen.launcher", "status", array_id, "--json"],
                                           cwd=project, env=job_env, capture_output=True, text=True).stdout)
        if all(t["state"] == "COMPLETED" for t in status["trials"]):
            break
        time.sleep(1)
    assert [(t["values"], t["state"]) for t in status["trials"]] == [
        ({"lr": lr}, "COMPLETED") for lr in (0.1, 0.01, 0.001)]
