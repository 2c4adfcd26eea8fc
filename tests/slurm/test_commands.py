"""Parsing of scontrol/sacct/squeue output and the command seam, with a fake runner."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fulmen.errors import SlurmCommandError
from fulmen.slurm import commands

PARTITION_LINE = (
    "PartitionName=low AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=10 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=n[1-3] PriorityJobFactor=1 "
    "PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE "
    "State=UP TotalCPUs=12 TotalNodes=3 SelectTypeParameters=NONE JobDefaults=(null) "
    "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=12,mem=12G,node=3,billing=12,gres/gpu=12"
)


class FakeRunner:
    """Stands in for run_command: answers by the first two words of the command."""

    def __init__(self, answers: dict[tuple[str, ...], str]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float = 60.0, check: bool = True) -> str:
        self.calls.append(list(argv))
        for prefix, out in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return out
        return ""


def test_parse_key_values_glues_unquoted_spaces() -> None:
    fields = commands.parse_key_values("NodeName=n1 OS=Linux 6.1 #1 SMP RealMemory=4096")
    assert fields == {"NodeName": "n1", "OS": "Linux 6.1 #1 SMP", "RealMemory": "4096"}


def test_list_partitions_reads_nodes_gpus_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "run_command", FakeRunner({("scontrol", "show"): PARTITION_LINE + "\n"}))
    low = commands.list_partitions()["low"]
    assert (low.total_nodes, low.total_cpus, low.gpus_per_node) == (3, 12, 4)
    assert low.max_nodes is None and not low.is_default and low.state == "UP"


def test_sacct_state_takes_the_job_row_and_strips_cancelled_by(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRunner({("sacct",): "12|CANCELLED by 0|0:15|n[1-2]|00:00:07\n"})
    monkeypatch.setattr(commands, "run_command", fake)
    state = commands.sacct_state("12")
    assert state is not None
    assert (state.state, state.exit_code, state.nodelist, state.is_final) == ("CANCELLED", "0:15", "n[1-2]", True)
    assert fake.calls[0][-2:] == ["-j", "12"]


def test_sacct_history_lists_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    out = "7|REQUEUED|0:0|n1|00:00:20\n7|COMPLETED|0:0|n1|00:00:30\n"
    monkeypatch.setattr(commands, "run_command", FakeRunner({("sacct",): out}))
    assert [s.state for s in commands.sacct_history("7")] == ["REQUEUED", "COMPLETED"]


def test_job_state_falls_back_to_squeue_without_accounting(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRunner({("squeue",): "9|RUNNING|n[1-2]|0:03\n", ("scontrol", "show", "job"): ""})
    monkeypatch.setattr(commands, "run_command", fake)
    monkeypatch.setattr(commands, "accounting_enabled", lambda: False)
    state = commands.job_state("9")
    assert (state.state, state.source, state.is_final) == ("RUNNING", "squeue", False)
    assert not any(call[0] == "sacct" for call in fake.calls)


def test_job_state_reads_restarts_from_scontrol(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRunner(
        {
            ("sacct",): "9|RUNNING|0:0|n1|00:00:03\n",
            ("scontrol", "show", "job"): "JobId=9 JobName=x JobState=RUNNING Restarts=2 NodeList=n1\n",
        }
    )
    monkeypatch.setattr(commands, "run_command", fake)
    monkeypatch.setattr(commands, "accounting_enabled", lambda: True)
    state = commands.job_state("9")
    assert (state.state, state.restarts, state.source) == ("RUNNING", 2, "sacct")


def test_unknown_job_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "run_command", FakeRunner({}))
    monkeypatch.setattr(commands, "accounting_enabled", lambda: True)
    assert commands.job_state("404").state == "UNKNOWN"


def test_cancel_and_requeue_build_the_right_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRunner({})
    monkeypatch.setattr(commands, "run_command", fake)
    commands.cancel("5", signal="USR2")
    commands.cancel("5")
    commands.requeue("40_3")
    assert fake.calls == [["scancel", "--signal=USR2", "5"], ["scancel", "5"], ["scontrol", "requeue", "40_3"]]


def test_missing_tool_raises_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SlurmCommandError, match="not found on PATH.*\n.*HINT"):
        commands.run_command(["scontrol", "ping"])


def test_failing_command_quotes_stderr(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "scontrol"
    tool.write_text("#!/bin/sh\necho 'Invalid job id specified' >&2\nexit 1\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmCommandError, match="exit status 1: Invalid job id specified"):
        commands.requeue("999")
