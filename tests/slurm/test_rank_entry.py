"""Rank setup pieces of the SLURM rank entry, on plain dicts and a temp run dir."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.jobs.ports import candidate_port
from fulmen.slurm import rank_entry, requeue
from tests.slurm.test_environment import BATCH_SHELL, STEP_TASK_RANK3

RANK0 = dict(STEP_TASK_RANK3, SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURMD_NODENAME="n1")


@pytest.mark.parametrize(
    ("spec", "sig"),
    [("USR2@90", signal.SIGUSR2), ("USR1@120", signal.SIGUSR1), ("B:SIGUSR1@30", signal.SIGUSR1), ("TERM", signal.SIGTERM)],
)
def test_warning_signal_from_sbatch_spec(spec: str, sig: signal.Signals) -> None:
    assert rank_entry.warning_signal(spec) == sig


def test_prepare_rank_exports_run_dir_restart_and_rendezvous(tmp_path: Path) -> None:
    env = dict(RANK0, SLURM_RESTART_COUNT="1")
    info = rank_entry.prepare_rank(tmp_path, env)
    assert info is not None and info.global_rank == 0
    assert env["FULMEN_RUN_DIR"] == str(tmp_path)
    assert env["FULMEN_RESTART_COUNT"] == "1"
    assert env["MASTER_ADDR"] == "n1"
    assert env["OMP_NUM_THREADS"] == "1"
    assert info.master_port == int(env["MASTER_PORT"])
    # Rank 0 published its probed choice for the other ranks.
    assert (tmp_path / "rendezvous" / "37.restart1.port").read_text() == env["MASTER_PORT"]


def test_other_ranks_take_rank0s_port(tmp_path: Path) -> None:
    env3 = dict(STEP_TASK_RANK3)
    result: dict[str, object] = {}
    waiter = threading.Thread(target=lambda: result.update(info=rank_entry.prepare_rank(tmp_path, env3)))
    waiter.start()
    env0 = dict(RANK0)
    rank_entry.prepare_rank(tmp_path, env0)
    waiter.join(10)
    assert env3["MASTER_PORT"] == env0["MASTER_PORT"]


def test_rank0_moves_past_a_busy_port(tmp_path: Path) -> None:
    import socket

    wanted = candidate_port("37", 0)
    with socket.socket() as busy:
        busy.bind(("", wanted))
        busy.listen()
        env = dict(RANK0)
        rank_entry.prepare_rank(tmp_path, env)
    assert int(env["MASTER_PORT"]) != wanted


def test_batch_shell_is_prepared_as_a_single_process(tmp_path: Path) -> None:
    env = dict(BATCH_SHELL)
    assert rank_entry.prepare_rank(tmp_path, env) is None
    assert "MASTER_PORT" not in env and env["FULMEN_RUN_DIR"] == str(tmp_path)


def test_launcher_variables_from_the_submit_shell_are_dropped(tmp_path: Path) -> None:
    env = dict(RANK0, RANK="5", WORLD_SIZE="8", MASTER_PORT="1234", FULMEN_CLUSTER="env")
    info = rank_entry.prepare_rank(tmp_path, env)
    assert info is not None and info.master_port != 1234
    assert "RANK" not in env and "WORLD_SIZE" not in env and "FULMEN_CLUSTER" not in env


def test_explicit_master_port_is_kept(tmp_path: Path) -> None:
    env = dict(RANK0)
    info = rank_entry.prepare_rank(tmp_path, env, extra_env=(("MASTER_PORT", "29555"),))
    assert info is not None and info.master_port == 29555
    assert not (tmp_path / "rendezvous").exists()


@pytest.fixture
def requeue_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(requeue, "requeue_job", lambda info, reason="": calls.append(reason) or True)
    return calls


def info_for(tmp_path: Path, rank: int):
    from fulmen.slurm.environment import rank_info_from_slurm

    env = dict(STEP_TASK_RANK3, SLURM_PROCID=str(rank), FULMEN_RUN_DIR=str(tmp_path))
    return rank_info_from_slurm(env)


def test_signal_outside_fit_requeues_from_rank0(tmp_path: Path, requeue_calls: list[str]) -> None:
    def body() -> None:
        raise rank_entry.SignalStop(signal.SIGUSR2)

    assert rank_entry.run_guarded(body, info_for(tmp_path, 0), False) == (PREEMPTED_EXIT_CODE, None)
    assert len(requeue_calls) == 1
    assert rank_entry.run_guarded(body, info_for(tmp_path, 1), False)[0] == PREEMPTED_EXIT_CODE
    assert len(requeue_calls) == 1  # only rank 0 requeues


def test_preempted_exit_code_from_trainer_makes_sure_the_job_is_requeued(
    tmp_path: Path, requeue_calls: list[str]
) -> None:
    def body() -> None:
        raise SystemExit(PREEMPTED_EXIT_CODE)

    assert rank_entry.run_guarded(body, info_for(tmp_path, 0), False)[0] == PREEMPTED_EXIT_CODE
    assert len(requeue_calls) == 1


def test_crash_is_requeued_only_when_asked(tmp_path: Path, requeue_calls: list[str]) -> None:
    def body() -> None:
        raise RuntimeError("boom")

    assert rank_entry.run_guarded(body, info_for(tmp_path, 2), False)[0] == 1
    assert requeue_calls == []
    assert rank_entry.run_guarded(body, info_for(tmp_path, 2), True)[0] == 1
    assert requeue_calls == ["rank 2 failed with exit code 1"]


def test_success_and_exit_codes(tmp_path: Path, requeue_calls: list[str]) -> None:
    assert rank_entry.run_guarded(lambda: 5, info_for(tmp_path, 0), True) == (0, 5)
    assert rank_entry.run_guarded(lambda: exec("raise SystemExit(None)"), None, False)[0] == 0
    assert rank_entry.run_guarded(lambda: exec("raise SystemExit('bad')"), None, False)[0] == 1
    assert requeue_calls == []


def test_reraise_hands_the_exception_to_submitit(tmp_path: Path, requeue_calls: list[str]) -> None:
    def body() -> None:
        raise ValueError("for the submitter")

    with pytest.raises(ValueError, match="for the submitter"):
        rank_entry.run_guarded(body, info_for(tmp_path, 0), False, reraise=True)


def test_topology_mismatch_is_one_message_without_traceback_and_no_requeue(
    tmp_path: Path, requeue_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from fulmen.errors import ClusterMismatchError
    from fulmen.jobs.exit_codes import CONFIGURATION_ERROR_EXIT_CODE

    def body() -> None:
        raise ClusterMismatchError("Trainer(num_nodes=1) expects 1 node(s), but this SLURM step runs on 2\nHINT: x")

    from fulmen.slurm.environment import rank_info_from_slurm

    infos = [rank_info_from_slurm(dict(STEP_TASK_RANK3, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank % 2),
                                       SLURM_NODEID=str(rank // 2))) for rank in range(4)]
    codes = [rank_entry.run_guarded(body, info, True)[0] for info in infos]
    assert codes == [CONFIGURATION_ERROR_EXIT_CODE] * 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # local rank 0 of each node (ranks 0 and 2) writes it into its own log; the console shows rank 0's
    assert err.count("fulmen: error: Trainer(num_nodes=1) expects 1 node(s)") == 2
    assert requeue_calls == []  # the same script would fail the same way again


def test_script_runs_in_the_launch_directory_with_code_from_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import sys

    workdir, run_dir = tmp_path / "project", tmp_path / "run"
    (workdir / "data").mkdir(parents=True)
    (workdir / "data" / "x.csv").write_text("1,2\n")
    (workdir / "helper.py").write_text("WHERE = 'working tree (edited after submission)'\n")
    (run_dir / "code").mkdir(parents=True)
    (run_dir / "code" / "helper.py").write_text("WHERE = 'snapshot'\n")
    (run_dir / "code" / "train.py").write_text(
        "import os, helper, pathlib\n"
        "pathlib.Path(os.environ['OUT']).write_text("
        "f\"{os.getcwd()}|{open('data/x.csv').read().strip()}|{helper.WHERE}|{os.environ['PYTHONPATH']}\")\n"
    )
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "path", [str(workdir), *sys.path])  # as `python -m submitit...` started here has it
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.delitem(sys.modules, "helper", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("OUT", str(tmp_path / "out.txt"))
    task = rank_entry.ScriptTask(run_dir=str(run_dir), entry="train.py", workdir=str(workdir))
    try:
        task._run_script()
    finally:
        sys.modules.pop("helper", None)
    cwd, data, where, pythonpath = (tmp_path / "out.txt").read_text().split("|")
    assert (cwd, data, where) == (str(workdir), "1,2", "snapshot")
    assert pythonpath.split(os.pathsep) == [str(run_dir / "code"), "/elsewhere"]


def test_missing_launch_directory_falls_back_to_the_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code_dir = tmp_path / "code"
    assert rank_entry.working_directory(str(tmp_path / "not-on-this-node"), code_dir) == code_dir
    assert "does not exist on this node" in capsys.readouterr().err
    assert rank_entry.working_directory(str(tmp_path), code_dir) == tmp_path
    assert rank_entry.working_directory("", code_dir) == code_dir  # a pickle from before `workdir` existed
