"""``launch --cluster torchx-local``: the torchx AppDef run by torchx's local_cwd scheduler, here.

Real processes: torchx starts one replica per node, each replica runs fulmen's local backend
(``launch``), which starts the ranks. The scripts are plain torch.distributed programs so that
these tests pin the torchx path itself; the Trainer/DDP example is in test_torchx_ddp_example.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torchx")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

ALL_REDUCE = """
import json, os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
value = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(value)
print(f"rank {dist.get_rank()} of {dist.get_world_size()} sum {value.item()}", flush=True)
if dist.get_rank() == 0:
    out = os.path.join(os.environ["FULMEN_RUN_DIR"], "result.json")
    with open(out, "w") as handle:
        json.dump({"sum": value.item(), "world_size": dist.get_world_size()}, handle)
dist.destroy_process_group()
"""

FAILING = """
import os, sys, time
if os.environ["RANK"] == "1":
    print("rank 1 gives up", flush=True)
    sys.exit(3)
time.sleep(60)
"""

SLEEPING = """
import os, time
print(f"pid {os.getpid()} rank {os.environ['RANK']}", flush=True)
time.sleep(60)
"""


@pytest.fixture
def workdir(tmp_path: Path, subprocess_env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    env = dict(subprocess_env)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # this test's own job index
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "FULMEN_RUN_DIR"):
        env.pop(name, None)
    return tmp_path, env


def fulmen(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    """``python -m fulmen.launcher ARGS`` (``launch`` or a job command), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fulmen.launcher", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(root: Path) -> Path:
    (run_dir,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return run_dir


def test_two_ranks_through_torchx_local_and_status_reports_it(workdir) -> None:
    root, env = workdir
    (root / "allreduce.py").write_text(ALL_REDUCE)
    done = fulmen(["--cluster", "torchx-local", "--nproc-per-node", "2", "--run-root", "runs", "allreduce.py"], root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "local_cwd://" in done.stderr
    assert "rank 0 of 2 sum 3.0" in done.stdout  # replica 0's output is echoed live
    run_dir = only_run_dir(root)
    assert json.loads((run_dir / "result.json").read_text()) == {"sum": 3.0, "world_size": 2}

    status = fulmen(["status"], root, env)
    assert status.returncode == 0, status.stderr
    assert "(torchx-local)" in status.stdout and "state: SUCCEEDED" in status.stdout
    assert f"run dir: {run_dir}" in status.stdout
    logs = fulmen(["logs", str(run_dir), "--rank", "1"], root, env)
    assert "rank 1 of 2 sum 3.0" in logs.stdout


def test_two_nodes_rendezvous_through_torchx_macros(workdir) -> None:
    root, env = workdir
    (root / "allreduce.py").write_text(ALL_REDUCE)
    args = ["--cluster", "torchx-local", "--nodes", "2", "--nproc-per-node", "2", "--run-root", "runs", "allreduce.py"]
    done = fulmen(args, root, env)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = only_run_dir(root)
    assert json.loads((run_dir / "result.json").read_text()) == {"sum": 10.0, "world_size": 4}
    assert sorted(p.name for p in (run_dir / "logs").glob("rank_*.log")) == [f"rank_{r}.log" for r in range(4)]


def test_failing_rank_fails_the_job(workdir) -> None:
    root, env = workdir
    (root / "fail.py").write_text(FAILING)
    started = time.monotonic()
    done = fulmen(["--cluster", "torchx-local", "--nproc-per-node", "2", "--run-root", "runs", "fail.py"], root, env)
    assert done.returncode == 1
    assert time.monotonic() - started < 30  # rank 0 was stopped, not waited for
    assert "rank 1" in done.stdout + done.stderr and "exit code 3" in done.stdout + done.stderr
    assert "<NONE>" not in done.stderr
    assert "state: FAILED" in fulmen(["status"], root, env).stdout


def test_cancel_stops_every_replica_and_rank(workdir) -> None:
    root, env = workdir
    (root / "sleep.py").write_text(SLEEPING)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "fulmen.launcher", "--cluster", "torchx-local", "--nproc-per-node", "2",
         "--run-root", "runs", "sleep.py"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            run_dirs = list((root / "runs").glob("*/logs/rank_*.log")) if (root / "runs").exists() else []
            pids = {int(m) for log in run_dirs for m in re.findall(r"pid (\d+)", log.read_text())}
            time.sleep(0.3)
        assert len(pids) == 2, "ranks did not start"
        assert "state: RUNNING" in fulmen(["status"], root, env).stdout
        cancel = fulmen(["cancel", str(only_run_dir(root))], root, env)
        assert cancel.returncode == 0, cancel.stderr
        output, _ = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 130, output
    assert "state: CANCELLED" in fulmen(["status"], root, env).stdout
    time.sleep(0.5)
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_without_torchx_the_error_names_the_extra(workdir) -> None:
    root, env = workdir
    (root / "train.py").write_text("print('never runs')\n")
    code = (
        "import sys\n"
        "sys.modules['torchx'] = None  # as if the package were not installed\n"
        "from fulmen.launcher.cli import launch_main\n"
        "sys.exit(launch_main(['--cluster', 'torchx-local', 'train.py']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "fulmen[torchx]" in done.stderr, done.stderr
    assert not (root / "fulmen_runs").exists()


def test_importing_the_backend_does_not_import_torchx(subprocess_env) -> None:
    code = (
        "import sys, fulmen.launcher.torchx\n"
        "print(sorted(m for m in ('torchx', 'kubernetes', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_replicas_left_by_a_killed_launcher_are_lost_then_cancelled(workdir) -> None:
    root, env = workdir
    (root / "sleep.py").write_text(SLEEPING)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "fulmen.launcher", "--cluster", "torchx-local", "--nproc-per-node", "2",
         "--run-root", "runs", "sleep.py"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            logs = list((root / "runs").glob("*/logs/rank_*.log")) if (root / "runs").exists() else []
            pids = {int(m) for log in logs for m in re.findall(r"pid (\d+)", log.read_text())}
            time.sleep(0.3)
        assert len(pids) == 2, "ranks did not start"
    finally:
        launcher.kill()  # SIGKILL: torchx gets no chance to stop its replicas
        launcher.wait(timeout=10)
    run_dir = only_run_dir(root)
    assert all(psutil.pid_exists(pid) for pid in pids)  # orphaned, still running
    assert "state: LOST" in fulmen(["status"], root, env).stdout
    cancel = fulmen(["cancel", str(run_dir)], root, env)
    assert cancel.returncode == 0, cancel.stderr
    assert "state: CANCELLED" in fulmen(["status"], root, env).stdout
    time.sleep(0.5)
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
