"""Local backend pieces that need no DDP ranks: checks, plan, log layout, process handling."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fulmen.errors import LaunchError
from fulmen.launcher import local
from fulmen.launcher.process_tree import ExitClock, ProcessTreeMonitor, stop_ranks
from fulmen.launcher.spec import JobSpec


def test_missing_module_is_named() -> None:
    with pytest.raises(LaunchError, match="-m no_such_pkg.train: no such module"):
        local.check_entry(JobSpec(entry="no_such_pkg.train", entry_is_module=True))
    local.check_entry(JobSpec(entry="json.tool", entry_is_module=True))


def test_rank_command_goes_through_the_rank_entry() -> None:
    assert local.rank_command(JobSpec(entry="t.py", args=("--a", "1"))) == [
        sys.executable, "-u", "-m", "fulmen.launcher.rank_entry", "t.py", "--a", "1"]
    assert local.rank_command(JobSpec(entry="p.m", entry_is_module=True))[-2:] == ["--module", "p.m"]


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "t.py"
    script.write_text("")
    spec = JobSpec(entry=str(script), nproc_per_node=3, run_root=str(tmp_path / "runs"), env=(("A", "1"),))
    assert local.run(spec, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "3 rank(s)" in out and "world size 3" in out and "env:          A=1" in out
    assert "fulmen.launcher.rank_entry" in out
    assert not (tmp_path / "runs").exists()


def test_multi_node_needs_master_addr_and_refuses_restarts() -> None:
    with pytest.raises(LaunchError, match="--master-addr"):
        local._rendezvous_id_and_port(JobSpec(entry="t.py", nodes=2), "id")
    with pytest.raises(LaunchError, match="HINT"):
        local._rendezvous_id_and_port(JobSpec(entry="t.py", nodes=2, master_addr="h", max_restarts=1), "id")


def test_multi_node_nodes_agree_on_id_and_port_without_talking() -> None:
    node0 = local._rendezvous_id_and_port(JobSpec(entry="t.py", nodes=2, master_addr="h", name="exp"), "a")
    node1 = local._rendezvous_id_and_port(JobSpec(entry="t.py", nodes=2, node_rank=1, master_addr="h", name="exp"), "b")
    assert node0 == node1 and node0[2] is False
    explicit = JobSpec(entry="t.py", nodes=2, master_addr="h", master_port=29400)
    assert local._rendezvous_id_and_port(explicit, "a")[1] == 29400


def test_logs_go_to_run_dir_and_only_local_rank_zero_to_console(tmp_path: Path) -> None:
    from fulmen.launcher.local_agent import RunDirLogs

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "rank_3.log").write_text("previous attempt\n")
    dest = RunDirLogs(tmp_path).reify({0: {"RANK": "2"}, 1: {"RANK": "3"}})
    assert dest.stdouts == {0: str(tmp_path / "logs" / "rank_2.log"), 1: str(tmp_path / "logs" / "rank_3.log")}
    assert dest.stderrs == {0: "", 1: ""}
    assert dest.tee_stdouts == {0: dest.stdouts[0]}
    assert (tmp_path / "logs" / "rank_3.attempt_0.log").read_text() == "previous attempt\n"


def test_describe_exit() -> None:
    from fulmen.launcher.local_agent import describe_exit

    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "signal SIGKILL (exit code -9)"


def _sleeper(extra: str = "") -> subprocess.Popen[bytes]:
    code = f"import time, signal{extra}\ntime.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def test_stop_ranks_kills_a_rank_that_ignores_sigterm_after_the_grace() -> None:
    stubborn = _sleeper("; signal.signal(signal.SIGTERM, lambda *a: None)")
    polite = _sleeper()
    time.sleep(0.5)  # let the handler be installed
    started = time.monotonic()
    stop_ranks([stubborn, polite], grace=0.5)
    assert time.monotonic() - started < 5
    assert polite.returncode == -signal.SIGTERM and stubborn.returncode == -signal.SIGKILL


def test_exit_clock_orders_exits_without_reaping() -> None:
    first = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    clock = ExitClock()
    clock.watch(0, first.pid)
    clock.watch(1, second.pid)
    assert second.wait(10) == 0 and first.wait(10) == 3  # exit codes still readable
    deadline = time.monotonic() + 5
    while len(clock.exited_at) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert clock.exited_at[0] < clock.exited_at[1]


def test_monitor_kills_orphaned_children(tmp_path: Path) -> None:
    # A "rank" that forks a worker (like a DataLoader) and is then killed: the worker survives
    # its parent, and kill_all() must still find it.
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    rank = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    monitor = ProcessTreeMonitor(interval=0)
    monitor.track({0: rank.pid})
    deadline = time.monotonic() + 10
    while not psutil.Process(rank.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    monitor.sample(force=True)
    child = psutil.Process(rank.pid).children()[0]
    rank.kill()
    rank.wait()
    assert child.is_running()
    monitor.kill_all()
    assert not monitor.live_processes()
    assert monitor.usage[0].peak_rss_bytes > 0 and monitor.usage[0].max_children == 1
    assert "rank 0 pid" in monitor.usage[0].describe(-9)
