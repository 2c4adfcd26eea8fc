"""``launch --sweep ... --parallel 2`` on this machine: 4 trials, one failing, then a resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.local.conftest import child_env, launch_cmd, run

SCRIPT = Path(__file__).resolve().parent / "scripts" / "sweep_fit.py"
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _overlap(notes: Path, indices: list[int]) -> int:
    """The most trials that were running at one moment (from their start/end notes)."""
    events = []
    for index in indices:
        events.append((json.loads((notes / f"start_{index}").read_text())["t"], 1))
        end = notes / f"end_{index}"
        if end.exists():
            events.append((float(end.read_text()), -1))
    running = peak = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    return peak


def test_four_trials_two_at_a_time_a_failure_is_named_and_a_resume_runs_only_it(tmp_path: Path) -> None:
    env = child_env(tmp_path)
    notes, fail_file = tmp_path / "notes", tmp_path / "fail"
    notes.mkdir()
    fail_file.write_text("0.01")
    env.update(NOTES_DIR=str(notes), FAIL_FILE=str(fail_file))
    root = tmp_path / "runs"
    options = ["--run-root", str(root), "--sweep", "lr=0.1,0.01", "--sweep", "hidden=2,4", "--parallel", "2"]
    script = [str(SCRIPT), "--lr", "7", "--epochs", "2"]
    first = run(launch_cmd(*options, *script), env, timeout=180)
    assert first.returncode == 1, first.stdout + first.stderr
    (sweep_dir,) = root.iterdir()
    assert sweep_dir.name.startswith("sweep_fit-sweep-")
    assert "2 of 4 trial(s) FAILED: trial_0002 (exit 1; lr=0.01 hidden=2), trial_0003 (exit 1; lr=0.01 hidden=4)" \
        in first.stderr
    assert "trial with lr=0.01 refuses to train" in first.stderr  # the failing trial's console tail
    states = {i: json.loads((sweep_dir / f"trial_{i:04d}" / "trial.json").read_text())["state"] for i in range(4)}
    assert states == {0: "COMPLETED", 1: "COMPLETED", 2: "FAILED", 3: "FAILED"}
    started = {i: json.loads((notes / f"start_{i}").read_text()) for i in range(4)}
    assert started[1]["args"] == {"lr": 0.1, "hidden": 4, "epochs": 2}  # the sweep's --lr beat the hand-given 7
    assert started[1]["trial"] == {"lr": 0.1, "hidden": 4}
    assert _overlap(notes, [0, 1, 2, 3]) <= 2
    for i in (0, 1):
        result = json.loads((sweep_dir / f"trial_{i:04d}" / "result.json").read_text())
        assert (result["state"], result["global_step"]) == ("finished", 8)
        assert result["checkpoint"]["monitor"] == "val_loss"

    fail_file.unlink()
    for note in notes.iterdir():
        note.unlink()
    second = run(launch_cmd(*options, "--run-dir", str(sweep_dir), *script), env, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(path.name for path in notes.glob("start_*")) == ["start_2", "start_3"]
    assert "2 completed earlier, running 2" in second.stdout

    table = run([*launch_cmd()[:-1], "sweep", "results", str(sweep_dir), "--json"], env)
    assert table.returncode == 0, table.stderr
    trials = json.loads(table.stdout)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETED"] * 4
    losses = [t["metrics"]["val_loss"] for t in trials]
    assert losses == sorted(losses)
    assert {json.dumps(t["values"], sort_keys=True) for t in trials} == {
        json.dumps({"hidden": h, "lr": lr}, sort_keys=True) for lr in (0.1, 0.01) for h in (2, 4)}
