"""The LightningCLI example on the real SLURM cluster: ``launch --cluster slurm --nodes 2 --gpus 1
--wait lightning_cli.py fit --config ...`` trains with world size 2, and the config is saved once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.slurm.conftest import REPO_ROOT, fulmen_cli
from tests.integration.slurm.test_submit_real import only_run_dir

pytestmark = [pytest.mark.slurm, pytest.mark.integration, pytest.mark.slow]


def test_cli_script_on_two_nodes(project: Path, job_env: dict[str, str]) -> None:
    for name in ("lightning_cli.py", "lightning_cli.yaml"):
        shutil.copy(REPO_ROOT / "examples" / name, project / name)
    proc = fulmen_cli(
        ["launch", "--cluster", "slurm", "--nodes", "2", "--gpus", "1", "--time", "5", "--wait",
         "lightning_cli.py", "fit", "--config", "lightning_cli.yaml", "--trainer.max_epochs=1"],
        dict(job_env, OMP_NUM_THREADS="1"), project, timeout=400,
    )  # fmt: skip
    console = proc.stdout + proc.stderr
    print(console)  # what a user sees (pytest -s)
    run_dir = only_run_dir(project)
    rank0 = (run_dir / "logs" / "rank_0.log").read_text()
    assert proc.returncode == 0, console + rank0
    assert "Final validation accuracy:" in rank0 and "(world size 2)" in rank0, rank0
    assert "Final validation accuracy:" not in (run_dir / "logs" / "rank_1.log").read_text()
    saved = [p for p in run_dir.rglob("config.yaml") if "snapshot" not in p.parts]
    assert len(saved) == 1 and saved[0].parent.parent.name == "lightning_logs", saved
    assert yaml.safe_load(saved[0].read_text())["trainer"]["max_epochs"] == 1
