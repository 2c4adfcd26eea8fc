"""A LightningCLI script under ``launch --nproc-per-node 2``: rank 0's console is the script's own
output, both ranks train (world size 2), and the config is saved once, into the run's log dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT, child_env, launch_cmd, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

EXAMPLE = REPO_ROOT / "examples" / "lightning_cli.py"
CONFIG = REPO_ROOT / "examples" / "lightning_cli.yaml"


def test_cli_script_under_launch_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "out"
    done = run(
        launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp_path / "run"), str(EXAMPLE), "fit", "--config",
                   str(CONFIG), "--trainer.max_epochs=1", f"--trainer.default_root_dir={root}"),
        dict(child_env(tmp_path), OMP_NUM_THREADS="1"),
        timeout=150,
    )  # fmt: skip
    print(done.stdout, done.stderr)  # what a user sees (pytest -s)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    finals = [line for line in lines if line.startswith("Final validation accuracy:")]
    assert len(finals) == 1 and finals[0].endswith("(world size 2)"), done.stdout  # printed by rank 0 only, unprefixed
    assert not [line for line in lines if line.startswith("[rank0]")]
    saved = list(root.rglob("config.yaml"))
    assert saved == [root / "lightning_logs" / "version_0" / "config.yaml"], saved
    config = yaml.safe_load(saved[0].read_text())
    assert config["trainer"]["max_epochs"] == 1 and config["model"] == {"hidden": 32, "lr": 0.01}
    assert "Seed set to 7" in done.stderr and "SaveConfigCallback expected" not in done.stderr
