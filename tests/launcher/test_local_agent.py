"""The elastic agent wrapper: log layout, exit descriptions, the end-of-run report."""

from __future__ import annotations

import io
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from torch.distributed.elastic.agent.server.api import RunResult, WorkerState

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.launcher.console import Console
from fulmen.launcher.local_agent import RunDirLogs, _report, describe_exit
from fulmen.launcher.process_tree import ProcessTreeMonitor


def test_logs_go_to_run_dir_and_only_local_rank_zero_to_console(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "rank_3.log").write_text("previous attempt\n")
    out, err = io.BytesIO(), io.BytesIO()
    logs = RunDirLogs(tmp_path, Console(out, err))  # type: ignore[arg-type]
    dest = logs.reify({0: {"RANK": "2"}, 1: {"RANK": "3"}})
    assert dest.stdouts[1] == str(tmp_path / "logs" / "rank_3.log") and dest.stderrs[1] == ""
    assert dest.tee_stdouts == {} and dest.tee_stderrs == {}  # nothing is read back out of a file
    assert (tmp_path / "logs" / "rank_3.attempt_0.log").read_text() == "previous attempt\n"
    # local rank 0 writes into pipes that the launcher copies to the console and to rank_2.log
    with open(dest.stdouts[0], "wb") as stdout, open(dest.stderrs[0], "wb") as stderr:
        stdout.write(b"out\r")
        stderr.write(b"err\n")
    logs.finish()
    assert out.getvalue() == b"[rank2]:out\r" and err.getvalue() == b"[rank2]:err\n"  # not global rank 0
    assert (tmp_path / "logs" / "rank_2.log").read_bytes() in (b"out\rerr\n", b"err\nout\r")  # unprefixed


def test_describe_exit() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "signal SIGKILL (exit code -9)"




class FakeAgent:
    """What _report reads from the agent: final exit codes, first failure, usage samples."""

    def __init__(
        self, codes: dict[int, int | None], first_failure: tuple[int, int, int] | None = None,
        shown_on_console: frozenset[int] = frozenset(),
    ) -> None:
        self._codes = codes
        self.first_failure = first_failure
        self.shown_on_console = shown_on_console
        self.monitor = ProcessTreeMonitor()
        self.late_signals: list[signal.Signals] = []

    def final_exit_codes(self) -> dict[int, int | None]:
        return self._codes


def _result(failed: bool) -> Any:
    return RunResult(state=WorkerState.FAILED if failed else WorkerState.SUCCEEDED,
                     failures={0: SimpleNamespace()} if failed else {})


def test_report_success(tmp_path: Path) -> None:
    assert _report(FakeAgent({0: 0, 1: 0}), _result(False), None, tmp_path) == 0  # type: ignore[arg-type]


def test_report_preempted_ranks_exit_75_with_relaunch_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = _report(FakeAgent({0: 75, 1: 75}, (1, 99, 75)), _result(True), None, tmp_path)  # type: ignore[arg-type]
    assert code == PREEMPTED_EXIT_CODE
    assert f"--run-dir {tmp_path}" in capsys.readouterr().err


def test_report_signal_to_launcher(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = FakeAgent({0: 75, 1: 75})
    assert _report(agent, None, signal.SIGTERM, tmp_path) == PREEMPTED_EXIT_CODE  # type: ignore[arg-type]
    assert "SIGTERM received" in capsys.readouterr().err
    killed = FakeAgent({0: -9, 1: 75})
    assert _report(killed, None, signal.SIGINT, tmp_path) == 128 + signal.SIGINT  # type: ignore[arg-type]


def test_a_signal_during_the_teardown_of_a_finished_run_keeps_it_a_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 16.7: every rank exited 0; a SIGTERM that reached the launcher while it tore the
    run down (torch raises it from wherever the agent is, so there is no result) is not a 143."""
    assert _report(FakeAgent({0: 0, 1: 0}), None, signal.SIGTERM, tmp_path) == 0  # type: ignore[arg-type]
    assert "SIGTERM received after the ranks had finished; the run completed." in capsys.readouterr().err
    noted = FakeAgent({0: 0, 1: 0})
    noted.late_signals.append(signal.SIGINT)  # held by FulmenAgent._shutdown, not raised
    assert _report(noted, _result(False), None, tmp_path) == 0  # type: ignore[arg-type]
    assert "SIGINT received after the ranks had finished" in capsys.readouterr().err


def test_report_names_first_failure_with_log_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "rank_1.log").write_text("step 3\nRuntimeError: boom\n")
    (tmp_path / "logs" / "rank_2.log").write_text("RuntimeError: Connection closed by peer\n\n")
    agent = FakeAgent({0: -9, 1: 3, 2: 1}, first_failure=(1, 4242, 3))
    assert _report(agent, _result(True), None, tmp_path) == 3  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "rank 1 (pid 4242) failed first, with exit code 3" in err and "    RuntimeError: boom" in err
    assert "rank 2 also failed, with exit code 1: RuntimeError: Connection closed by peer" in err
    assert "rank 0 also failed" not in err  # stopped by us (signal), not its own failure
    shown = FakeAgent({0: -9, 1: 3}, first_failure=(1, 4242, 3), shown_on_console=frozenset({0, 1}))
    assert _report(shown, _result(True), None, tmp_path) == 3  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "RuntimeError: boom" not in err  # its error is on the console already: printed once
    assert f"its output is above; all of it is in {tmp_path / 'logs' / 'rank_1.log'}" in err
    signalled = FakeAgent({0: -15, 1: -9}, first_failure=(1, 4242, -9))
    assert _report(signalled, _result(True), None, tmp_path) == 137  # type: ignore[arg-type]
