"""Acceptance: ``launch --cluster torchx-local --nodes 1 --nproc-per-node 2`` trains a DDP fit
through torchx on this machine, ``fulmen status`` reports it, and the result is the one the
plain local launcher gives (same shards, same synced metric, bit-identical final weights).

The training script is the local launcher's acceptance script (tests/integration/local/scripts/
ddp_fit.py): a Trainer(strategy="ddp") fit on CPU with gloo, deterministic, which writes what
each rank saw and ended with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchx")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[3]
DDP_FIT = REPO_ROOT / "tests" / "integration" / "local" / "scripts" / "ddp_fit.py"


def _env(tmp_path: Path, subprocess_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT", "FULMEN_RUN_DIR")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def _fulmen(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fulmen.launcher", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=150
    )


def _results(out: Path) -> list[dict]:
    return [json.loads((out / f"result_rank{rank}.json").read_text()) for rank in range(2)]


def test_ddp_fit_through_torchx_local_matches_the_local_launcher(tmp_path: Path, subprocess_env) -> None:
    env = _env(tmp_path, subprocess_env)
    common = ["--nproc-per-node", "2", "--run-root", str(tmp_path / "runs"), str(DDP_FIT)]

    torchx_args = ["launch", "--cluster", "torchx-local", "--nodes", "1", *common, "--out", str(tmp_path / "tx")]
    via_torchx = _fulmen(torchx_args, env, tmp_path)
    assert via_torchx.returncode == 0, via_torchx.stdout + via_torchx.stderr
    status = _fulmen(["status"], env, tmp_path)
    assert "(torchx-local)" in status.stdout and "state: SUCCEEDED" in status.stdout, status.stdout + status.stderr

    via_local = _fulmen(["launch", *common, "--out", str(tmp_path / "local")], env, tmp_path)
    assert via_local.returncode == 0, via_local.stdout + via_local.stderr

    torchx_ranks, local_ranks = _results(tmp_path / "tx"), _results(tmp_path / "local")
    assert [r["world_size"] for r in torchx_ranks] == [2, 2]
    assert [r["global_rank"] for r in torchx_ranks] == [0, 1]
    samples = 64  # ddp_fit.py's dataset size
    shards = [set(r["seen"][: samples // 2]) for r in torchx_ranks]  # epoch 0: the dataset over 2 ranks
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(samples))
    assert torchx_ranks[0]["weights"] == torchx_ranks[1]["weights"]  # DDP kept replicas in sync
    for tx, lo in zip(torchx_ranks, local_ranks):
        assert (tx["global_step"], tx["seen"], tx["rank_value"]) == (lo["global_step"], lo["seen"], lo["rank_value"])
        assert tx["weights"] == lo["weights"]
    # the Trainer's default root dir is the run dir torchx's replica was given
    run_dir = Path(status.stdout.split("run dir: ", 1)[1].strip())
    assert Path(torchx_ranks[0]["log_dir"]).is_relative_to(run_dir)
    assert sorted(p.name for p in (run_dir / "logs").glob("rank_*.log")) == ["rank_0.log", "rank_1.log"]


def test_max_restarts_restarts_the_ranks_inside_the_torchx_local_replica(tmp_path: Path, subprocess_env) -> None:
    # torchx's local scheduler does not retry replicas, so --max-restarts goes to the local backend
    env = _env(tmp_path, subprocess_env)
    args = ["launch", "--cluster", "torchx-local", "--nproc-per-node", "2", "--max-restarts", "1",
            "--run-root", str(tmp_path / "runs"), str(DDP_FIT), "--out", str(tmp_path / "out"),
            "--kill-rank", "1", "--kill-at-step", "3"]
    done = _fulmen(args, env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restart 1 of 1" in done.stdout + done.stderr
    ranks = _results(tmp_path / "out")
    assert [r["global_step"] for r in ranks] == [16, 16]  # 2 epochs x 64 samples / (2 ranks x batch 4)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert "state: SUCCEEDED" in _fulmen(["status"], env, tmp_path).stdout
