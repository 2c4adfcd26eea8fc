"""The headline command on an unchanged Lightning-style script (issue #14, items 1 and 2).

``launch --cluster slurm --nodes 2 --gpus 2 train.py`` where train.py names neither num_nodes
nor devices and reads ``data/x.csv`` relative to the directory launch was called from:
it trains with world size 4, the data is found, and an edit of the script after submission
does not reach the job. A script that says ``Trainer(num_nodes=1)`` under ``--nodes 2`` gets
one clear message on the console: no traceback, printed once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.integration.slurm.conftest import fulmen_cli
from tests.integration.slurm.test_submit_real import job_id_from, only_run_dir, wait_until_final

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]

TRAIN = """\
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl

VERSION = "submitted"
data = np.loadtxt("data/x.csv", delimiter=",", dtype=np.float32)


class Model(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


loader = DataLoader(TensorDataset(torch.from_numpy(data[:, :2]), torch.from_numpy(data[:, 2:])), batch_size=2)
trainer = pl.Trainer(TRAINER_ARGS max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False)
trainer.fit(Model(), loader)
print(f"TOPOLOGY version={VERSION} rank={trainer.global_rank} world={trainer.world_size} "
      f"nodes={trainer.num_nodes} devices={trainer.num_devices} rows={len(data)}", flush=True)
"""


def write_project(project: Path, trainer_args: str) -> None:
    (project / "data").mkdir()
    (project / "data" / "x.csv").write_text("".join(f"{i},{i + 1},{2 * i}\n" for i in range(8)))
    (project / "train.py").write_text(TRAIN.replace("TRAINER_ARGS", trainer_args))


def test_unchanged_script_trains_on_2x2_reads_relative_data_and_ignores_later_edits(
    project: Path, job_env: dict[str, str]
) -> None:
    write_project(project, 'accelerator="auto", devices="auto",')
    # --begin holds the job for a few seconds, so the edit below surely lands before any rank starts.
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nodes", "2", "--gpus", "2", "--time", "5",
                       "--sbatch-arg", "begin=now+3", "train.py"], job_env, project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    edited_at = time.time()
    (project / "train.py").write_text(TRAIN.replace('VERSION = "submitted"', 'raise SystemExit("the edit leaked")'))
    job_id = job_id_from(proc.stderr)
    final = wait_until_final(job_id, 240)
    run_dir = only_run_dir(project)
    logs = [(run_dir / "logs" / f"rank_{rank}.log").read_text() for rank in range(4)]
    assert final.state == "COMPLETED", (final, logs)
    for rank, text in enumerate(logs):
        started = float(re.search(r"^fulmen: rank \d+/4 .* started at ([\d.]+)", text, re.M).group(1))
        assert edited_at < started, "the edit must come before the rank starts, or the test proves nothing"
        assert f"TOPOLOGY version=submitted rank={rank} world=4 nodes=2 devices=2 rows=8" in text, text


def test_explicit_num_nodes_that_contradicts_the_job_is_one_message_once(
    project: Path, job_env: dict[str, str]
) -> None:
    write_project(project, "num_nodes=1,")
    proc = fulmen_cli(["launch", "--cluster", "slurm", "--nodes", "2", "--gpus", "2", "--time", "5", "--wait",
                       "train.py"], job_env, project)
    console = proc.stdout + proc.stderr
    print(console)  # what a user sees (pytest -s)
    assert proc.returncode == 78, console
    assert console.count("Trainer(num_nodes=1) expects 1 node(s), but this SLURM step runs on 2 node(s)") == 1
    assert "HINT: leave num_nodes out of Trainer(...) to take the step's 2" in console
    assert "Traceback" not in console and "ClusterMismatchError" not in console
