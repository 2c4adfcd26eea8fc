"""``fulmen status / logs / cancel / list / events / report``: argv reaches the right job command."""

from __future__ import annotations

import types

import pytest

from fulmen.launcher import cli, job_cli


def test_job_commands_are_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[object, ...]]] = []
    fake = types.SimpleNamespace(
        status=lambda job, all_jobs, as_json=False, watch=None: calls.append(("status", (job, all_jobs, watch))) or 0,
        logs=lambda job, rank=None, follow=False, all_jobs=False: calls.append(("logs", (job, rank, follow, all_jobs)))
        or 0,
        cancel=lambda job, all_jobs, trial=None: calls.append(("cancel", (job, all_jobs, trial))) or 0,
        list_jobs=lambda all_jobs: calls.append(("list", (all_jobs,))) or 3,
    )
    monkeypatch.setattr(job_cli, "_job_commands", lambda: fake)
    assert cli.main(["status"]) == 0
    assert cli.main(["status", "123"]) == 0
    assert cli.main(["status", "--all"]) == 0
    assert cli.main(["logs", "123", "--rank", "1", "--follow"]) == 0
    assert cli.main(["logs", "--all"]) == 0
    assert cli.main(["cancel", "123"]) == 0
    assert cli.main(["cancel"]) == 0
    assert cli.main(["list"]) == 3
    assert cli.main(["list", "--all"]) == 3
    assert calls == [("status", (None, False, None)), ("status", ("123", False, None)), ("status", (None, True, None)),
                     ("logs", ("123", 1, True, False)), ("logs", (None, None, False, True)),
                     ("cancel", ("123", False, None)), ("cancel", (None, False, None)), ("list", (False,)),
                     ("list", (True,))]


def test_events_status_json_watch_trial_and_report_are_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, tuple[object, ...]]] = []
    fake = types.SimpleNamespace(
        status=lambda job, all_jobs, as_json, watch: calls.append(("status", (job, all_jobs, as_json, watch))) or 0,
        events=lambda job, all_jobs, as_json: calls.append(("events", (job, all_jobs, as_json))) or 0,
        cancel=lambda job, all_jobs, trial: calls.append(("cancel", (job, all_jobs, trial))) or 0,
        report=lambda job, all_jobs, output: calls.append(("report", (job, all_jobs, output))) or 0,
    )
    monkeypatch.setattr(job_cli, "_job_commands", lambda: fake)
    assert cli.main(["status", "7", "--json"]) == 0
    assert cli.main(["status", "7", "--watch"]) == 0
    assert cli.main(["status", "--watch", "7", "--interval", "0.5"]) == 0
    assert cli.main(["events", "7"]) == 0
    assert cli.main(["events", "--json", "--all"]) == 0
    assert cli.main(["cancel", "fulmen_runs/x-sweep-1", "--trial", "3"]) == 0
    assert cli.main(["report", "7", "-o", "r.html"]) == 0
    assert cli.main(["report"]) == 0
    assert calls == [("status", ("7", False, True, None)), ("status", ("7", False, False, 2.0)),
                     ("status", ("7", False, False, 0.5)), ("events", ("7", False, False)),
                     ("events", (None, True, True)), ("cancel", ("fulmen_runs/x-sweep-1", False, 3)),
                     ("report", ("7", False, "r.html")), ("report", (None, False, None))]
