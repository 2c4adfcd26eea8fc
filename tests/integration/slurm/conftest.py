"""The real local SLURM cluster from ../shared/slurm, started once per test session.

``slurm_cluster`` runs ``bash ../shared/slurm/start-cluster.sh`` (idempotent: ~0.7 s when the
cluster is already up). pytest-xdist workers each run the session fixture, so a file lock
keeps two workers from starting daemons at the same moment.

When ``../shared/slurm`` is missing the tests fail under ``CI=true`` (CI must exercise them) and
are skipped with the reason otherwise.

The cluster is *not* stopped at the end: xdist workers finish at different times and a worker
that stops it would kill the jobs of the others; other sessions on the machine may use it too.
Stopping it is CI's business (``trap 'bash ../shared/slurm/stop-cluster.sh' EXIT``), and the
daemons end with the machine's session anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SLURM_DIR = REPO_ROOT.parent / "shared" / "slurm"
START_SCRIPT = SLURM_DIR / "start-cluster.sh"


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Start (or find) the cluster; returns start-cluster.sh's summary line."""
    if not START_SCRIPT.is_file():
        reason = f"the local SLURM cluster scripts are missing ({START_SCRIPT})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI must run the SLURM tests")
        pytest.skip(reason)
    from filelock import FileLock

    lock = FileLock(os.path.join(tempfile.gettempdir(), "fulmen-slurm-start.lock"))
    with lock.acquire(timeout=600):
        proc = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"start-cluster.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return proc.stdout.strip()


@pytest.fixture
def job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: str) -> dict[str, str]:
    """Environment for `launch`/`fulmen` subprocesses: repo importable, private job index."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["XDG_STATE_HOME"] = str(state)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "FULMEN_RUN_DIR"):
        env.pop(name, None)
    return env


def fulmen_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fulmen.launcher ARGS`` (``launch`` or a job command)."""
    return subprocess.run(
        [sys.executable, "-m", "fulmen.launcher", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A folder to submit from (its scripts are snapshotted; run dirs go under it)."""
    folder = tmp_path / "project"
    folder.mkdir()
    yield folder
