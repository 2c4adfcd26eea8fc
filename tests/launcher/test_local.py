"""Local backend pieces that need no DDP ranks: checks, plan, log layout, process handling."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.rundir import new_run
from fulmen.jobs.spec import JobSpec
from fulmen.launcher import local
from fulmen.launcher.backends import launch


def test_missing_module_is_named() -> None:
    with pytest.raises(LaunchError, match="-m no_such_pkg.train: no such module"):
        local.check_entry(JobSpec(entry="no_such_pkg.train", entry_is_module=True))
    local.check_entry(JobSpec(entry="json.tool", entry_is_module=True))


def test_rank_command_goes_through_the_rank_entry() -> None:
    assert local.rank_command(JobSpec(entry="t.py", args=("--a", "1"))) == [
        sys.executable, "-u", "-m", "fulmen.launcher.rank_entry", "t.py", "--a", "1"]
    assert local.rank_command(JobSpec(entry="p.m", entry_is_module=True))[-2:] == ["--module", "p.m"]


def test_dry_run_prints_the_plan_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "usable_cpus", lambda: 4)  # 3 ranks fit, whatever this machine has
    script = tmp_path / "t.py"
    script.write_text("")
    spec = JobSpec(entry=str(script), nproc_per_node=3, run_root=str(tmp_path / "runs"), env=(("A", "1"),))
    assert launch(spec, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "3 rank(s)" in out and "world size 3" in out and "env:          A=1" in out
    assert "fulmen.launcher.rank_entry" in out
    assert "ranks see: num_nodes=1, devices=3 per node, world size 3" in out
    assert f"working dir:  {Path.cwd()} (relative paths in the script resolve here)" in out
    assert not (tmp_path / "runs").exists()


def test_multi_node_needs_master_addr_before_creating_anything(tmp_path: Path) -> None:
    script = tmp_path / "t.py"
    script.write_text("")
    with pytest.raises(LaunchError, match="--master-addr"):
        launch(JobSpec(entry=str(script), nodes=2, run_root=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()
    local.check_nodes(JobSpec(entry="t.py", nodes=2, master_addr="h", max_restarts=1))  # restarts: fine


def test_multi_node_nodes_agree_on_id_and_port_without_talking() -> None:
    node0 = local._rendezvous_id_and_port(JobSpec(entry="t.py", nodes=2, master_addr="h", name="exp"), "a")
    node1 = local._rendezvous_id_and_port(JobSpec(entry="t.py", nodes=2, node_rank=1, master_addr="h", name="exp"), "b")
    assert node0 == node1 and node0[2] is False
    explicit = JobSpec(entry="t.py", nodes=2, master_addr="h", master_port=29400)
    assert local._rendezvous_id_and_port(explicit, "a")[1] == 29400


def test_launcher_environment_sets_run_vars_drops_inherited_ranks_and_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    monkeypatch.setenv("FULMEN_CLUSTER", "single")  # would make every rank relaunch itself
    monkeypatch.setenv("RANK", "3")
    before = dict(os.environ)
    handler = signal.getsignal(signal.SIGUSR1)
    spec = JobSpec(entry="t.py", nproc_per_node=2, env=(("EXTRA", "1"),))
    with local._launcher_environment(spec, tmp_path):
        assert os.environ["FULMEN_RUN_DIR"] == str(tmp_path) and os.environ["EXTRA"] == "1"
        assert "FULMEN_CLUSTER" not in os.environ and "RANK" not in os.environ
        assert "SIGUSR1" in os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"]
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # as the agent does
    assert dict(os.environ) == before and signal.getsignal(signal.SIGUSR1) is handler


def test_job_record_of_another_backend_is_left_alone(tmp_path, monkeypatch) -> None:
    """A torchx replica runs the local backend inside the torchx job's run dir: the record stays torchx's."""
    from fulmen.jobs import records
    from fulmen.jobs.spec import JobSpec
    from fulmen.launcher import local

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    ours = records.new_record("local_cwd://torchx/t-1", "torchx-local", tmp_path, "t", {})
    records.write_record(ours)
    record = local._write_job_record(new_run(JobSpec(entry="train.py", run_dir=str(tmp_path)), run_id="run-1"))
    local._finish_job_record(record, 0)
    assert record is None
    assert records.read_record(tmp_path) == ours


def test_job_record_of_a_local_run_is_written_and_finished(tmp_path, monkeypatch) -> None:
    from fulmen.jobs import records
    from fulmen.jobs.spec import JobSpec
    from fulmen.launcher import local

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    record = local._write_job_record(new_run(JobSpec(entry="train.py", run_dir=str(tmp_path)), run_id="run-1"))
    assert records.read_record(tmp_path).extra["final_state"] == "RUNNING"
    local._finish_job_record(record, 75)
    assert records.read_record(tmp_path).extra["final_state"] == "PREEMPTED"


@pytest.mark.parametrize("force", [False, True])
def test_more_cpu_ranks_than_cpus_are_refused_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], force: bool
) -> None:
    monkeypatch.setattr(local, "usable_cpus", lambda: 2)
    script = tmp_path / "t.py"
    script.write_text("")
    spec = JobSpec(entry=str(script), nproc_per_node=10000, run_root=str(tmp_path / "runs"), force=force)
    if force:
        assert launch(spec, dry_run=True) == 0
        assert "10000 rank(s)" in capsys.readouterr().out
        return
    with pytest.raises(LaunchError, match=r"--nproc-per-node 10000 .* has 2 usable CPUs.*\nHINT: .*--nproc-per-node 2 .*--force"):
        launch(spec, dry_run=True)
    assert not (tmp_path / "runs").exists()
    local.check_cpu_ranks(dataclasses.replace(spec, nproc_per_node=2))  # as many as CPUs is fine


def test_dry_run_shows_names_but_not_values_of_secret_variables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "t.py"
    script.write_text("")
    spec = JobSpec(entry=str(script), run_root=str(tmp_path / "runs"), env=(("HF_TOKEN", "hf_x"), ("A", "1")))
    assert launch(spec, dry_run=True) == 0
    out = capsys.readouterr().out
    assert "env:          HF_TOKEN=<hidden>" in out and "hf_x" not in out and "env:          A=1" in out
