"""``launch --sweep ...`` parsing and ``fulmen sweep results`` (on sweep dirs written here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.run_result import write_result
from fulmen.jobs.spec import JobSpec
from fulmen.launcher.cli import main, parse_launch_namespace
from fulmen.launcher.sweep_cli import cancel, latest_sweep, results, space_from_args, trial_rows
from fulmen.launcher.sweep_run import COMPLETED, FAILED, write_sweep, write_trial_state
from fulmen.sweep.space import SweepSpace, parse_sweep_option


def _space(argv: list[str]) -> SweepSpace | None:
    ns, _ = parse_launch_namespace([*argv, "train.py"])
    return space_from_args(ns)


def test_sweep_options_build_the_space_and_a_plain_launch_has_none() -> None:
    space = _space(["--sweep", "lr=0.1,0.01", "--sweep", "hidden=8,16", "--sweep-mode", "random",
                    "--trials", "3", "--sweep-seed", "5"])
    assert space is not None
    assert [p.name for p in space.parameters] == ["lr", "hidden"]
    assert (space.mode, space.trials, space.seed) == ("random", 3, 5)
    assert _space([]) is None


def test_a_sweep_file_and_sweep_options_combine_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("mode: random\ntrials: 4\nseed: 1\nparameters:\n  lr: [0.1, 0.01]\n  hidden: range(8, 16, 2)\n")
    space = _space(["--sweep-file", str(path), "--sweep", "wd=0,1e-4", "--trials", "2"])
    assert space is not None
    assert [p.name for p in space.parameters] == ["lr", "hidden", "wd"]
    assert (space.mode, space.trials, space.seed) == ("random", 2, 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sweep", "lr=1", "--parallel", "0"], "--parallel must be >= 1"),
        (["--parallel", "2"], "only for a sweep"),
        (["--trials", "2"], "only for a sweep"),
        (["--sweep", "lr"], "is not NAME=VALUES"),
        (["--sweep-file", "/nonexistent/sweep.yaml"], "cannot read it"),
    ],
)
def test_bad_sweep_options_are_refused_before_anything_runs(argv: list[str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        _space(argv)


def _sweep_dir(tmp_path: Path) -> Path:
    sweep_dir = tmp_path / "fulmen_runs" / "train-sweep-1"
    space = SweepSpace((parse_sweep_option("lr=0.1,0.01,1"),))
    trials = space.generate()
    write_sweep(sweep_dir, JobSpec(entry="train.py"), space, trials)
    checkpoint = {"monitor": "val_acc", "mode": "max", "best_model_score": 0.0, "best_model_path": None}
    for trial, state, acc in zip(trials, (COMPLETED, COMPLETED, FAILED), (0.5, 0.9, None)):
        write_trial_state(sweep_dir, trial, state, 0 if state == COMPLETED else 1)
        if acc is not None:
            write_result(sweep_dir / f"trial_{trial.index:04d}", {
                "state": "finished", "global_step": 10, "metrics": {"val_acc": acc, "loss": 1 - acc},
                "checkpoint": checkpoint,
            })  # fmt: skip
    return sweep_dir


def test_results_rank_by_the_checkpoint_monitor_in_its_mode_and_by_any_metric(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir = _sweep_dir(tmp_path)
    assert [row["state"] for row in trial_rows(sweep_dir)] == [COMPLETED, COMPLETED, FAILED]
    assert results(str(sweep_dir), as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sort"] == "val_acc"
    assert [(t["trial"], t["values"], t["state"]) for t in data["trials"]] == [
        (1, {"lr": 0.01}, COMPLETED), (0, {"lr": 0.1}, COMPLETED), (2, {"lr": 1}, FAILED)]
    assert data["trials"][0]["metrics"]["val_acc"] == 0.9
    assert results(str(sweep_dir), sort="loss", as_json=True) == 0
    assert [t["trial"] for t in json.loads(capsys.readouterr().out)["trials"]] == [1, 0, 2]


def test_results_table_defaults_to_the_latest_sweep_here(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_dir = _sweep_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert latest_sweep(Path("fulmen_runs")).resolve() == sweep_dir.resolve()
    assert main(["sweep", "results"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ranked by val_acc" in lines[0]
    assert lines[1].split() == ["trial", "lr", "state", "step", "val_acc", "job"]
    assert lines[2].split() == ["1", "0.01", "COMPLETED", "10", "0.9", "-"]
    assert lines[4].split() == ["2", "1", "FAILED", "-", "-", "-"]
    assert main(["sweep", "status"]) == 0  # the same table in trial order
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]] == ["0", "1", "2"]


def test_cancel_names_a_missing_trial_and_says_when_nothing_runs(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir = _sweep_dir(tmp_path)
    with pytest.raises(LaunchError, match="has no trial 7"):
        cancel(str(sweep_dir), trial=7)
    assert cancel(str(sweep_dir)) == 0
    assert "nothing to cancel" in capsys.readouterr().out


def test_results_without_a_sweep_say_where_they_looked(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="No sweep under"):
        latest_sweep(tmp_path)
    with pytest.raises(LaunchError, match="is not a sweep dir"):
        trial_rows(tmp_path)
