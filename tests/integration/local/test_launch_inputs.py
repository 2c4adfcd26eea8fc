"""The launcher's exposure and its handling of bad input, with real launcher and rank processes:
the rendezvous store listens on the master address only, a busy --master-port is one line, a
closed console does not fail a finished run, secrets reach the ranks but not the run records."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.local.conftest import REPO_ROOT, child_env, launch_cmd, run

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parent / "scripts" / "wait_for_file.py"


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"launcher ended (exit {proc.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout} s"
        time.sleep(0.05)


def _run_dir(runs: Path) -> Path:
    (found,) = runs.iterdir()
    return found


def test_rendezvous_store_listens_on_the_master_address_only(tmp_path: Path) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    cmd = launch_cmd("--nproc-per-node", "2", "--run-root", str(runs), "--env", "HF_TOKEN=hf-secret-value",
                     str(SCRIPT), str(out))  # fmt: skip
    proc = subprocess.Popen(cmd, env=child_env(tmp_path), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for rank in (0, 1):  # the ranks start independently: either may write first
            _wait_for(out / f"rank{rank}.json", proc)
        seen = json.loads((out / "rank0.json").read_text())
        port = int(seen["MASTER_PORT"])
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]  # fmt: skip
        (out / "go").touch()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert seen["MASTER_ADDR"] == "127.0.0.1"
    assert [addr.ip for addr in listening] == ["127.0.0.1"], listening  # was "::" / "0.0.0.0": every interface
    # --env: the ranks get the secret; the run's records keep its name only, owner-readable
    assert seen["HF_TOKEN"] == "hf-secret-value"
    run_dir = _run_dir(runs)
    for record in (run_dir / "spec.json", run_dir / "job.json"):
        assert "hf-secret-value" not in record.read_text() and "HF_TOKEN" in record.read_text()
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700


def test_a_busy_master_port_is_one_error_line_naming_the_port(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run(launch_cmd("--master-port", str(port), "--run-root", str(tmp_path / "runs"), str(SCRIPT), str(out)),
                   child_env(tmp_path))  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("fulmen: run dir")]
    assert errors[0] == f"error: --master-port {port} is in use on 127.0.0.1 (another process listens there)."
    assert errors[1].startswith("HINT: ") and len(errors) == 2
    assert not (out / "rank0.json").exists()  # no rank started


def test_a_console_closed_early_does_not_fail_a_finished_run(tmp_path: Path) -> None:
    """``launch train.py 2>&1 | head -1`` with a real pipe whose reader leaves after one line."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    cmd = launch_cmd("--run-root", str(runs), str(SCRIPT), str(out), "2000")
    proc = subprocess.Popen(cmd, env=child_env(tmp_path), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # like `head -1`: the reader is gone, later writes get EPIPE
        _wait_for(out / "rank0.json", proc)
        (out / "go").touch()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert first
    assert code == 0
    record = json.loads((_run_dir(runs) / "job.json").read_text())
    assert record["extra"]["final_state"] == "COMPLETED" and record["extra"]["exit_code"] == 0
    log = (_run_dir(runs) / "logs" / "rank_0.log").read_text()
    assert "line 1999" in log  # the rank's output still reached its log in full
