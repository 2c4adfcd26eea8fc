"""MLFlowLogger and WandbLogger under two DDP ranks (``python script.py`` with Trainer(devices=2)):
one run is written, by global rank zero, and ModelCheckpoint's folder follows that run's id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat.readers import mlflow_run, wandb_offline_run

SCRIPT = Path(__file__).resolve().parent / "scripts" / "tracked_fit.py"
REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _fit(kind: str, folder: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "FULMEN_RUN_DIR")}
    env.update(
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        XDG_STATE_HOME=str(folder / "state"),
        MLFLOW_ALLOW_FILE_STORE="true",
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
    )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), kind, str(folder)],
        env=env, cwd=folder, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_two_ranks_write_one_mlflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # to read the store back here
    stdout = _fit("mlflow", tmp_path)
    experiments = [p for p in (tmp_path / "mlruns").iterdir() if p.is_dir() and p.name not in ("0", ".trash")]
    assert len(experiments) == 1
    runs = [p for p in experiments[0].iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected rank zero's run only, found {runs}"
    run = mlflow_run(f"file:{tmp_path / 'mlruns'}", runs[0].name)
    assert run["status"] == "FINISHED" and run["params"] == {"lr": "0.1"}
    assert [step for step, _ in run["metrics"]["train/loss"]] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert any(path.endswith(".ckpt") for path in run["artifacts"])  # log_model=True, at the end
    assert f"{experiments[0].name}/{runs[0].name}/checkpoints/" in stdout


def test_two_ranks_write_one_offline_wandb_run(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    stdout = _fit("wandb", tmp_path)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected rank zero's run only, found {runs}"
    written = wandb_offline_run(runs[0])
    assert written["config"] == {"lr": 0.1}
    assert [row["trainer/global_step"] for row in written["history"] if "train/loss" in row] == list(range(8))
    run_id = runs[0].name.rsplit("-", 1)[-1]
    assert f"ddp/{run_id}/checkpoints/" in stdout
