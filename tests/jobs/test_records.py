"""Job records: written atomically, indexed per user, found by id, name or path."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs import records


@pytest.fixture(autouse=True)
def private_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def record_in(tmp_path: Path, job_id: str, name: str, when: float) -> records.JobRecord:
    run_dir = tmp_path / f"{name}-{job_id}"
    run_dir.mkdir()
    record = records.JobRecord(job_id, "slurm", str(run_dir), name, when, {"entry": "t.py"}, {"num_tasks": 4})
    records.write_record(record)
    return record


def test_round_trip(tmp_path: Path) -> None:
    record = record_in(tmp_path, "12", "train", 100.0)
    assert records.read_record(Path(record.run_dir)) == record
    assert records.index_path() == tmp_path / "state" / "fulmen" / "jobs.jsonl"


def test_find_by_id_name_or_path_newest_wins(tmp_path: Path) -> None:
    old = record_in(tmp_path, "12", "train", 100.0)
    new = record_in(tmp_path, "13", "train", 200.0)
    assert records.find_record("12") == old
    assert records.find_record("train") == new
    assert records.find_record(old.run_dir) == old
    assert records.find_record(Path(new.run_dir).name) == new
    assert records.latest_record() == new
    assert [r.job_id for r in records.all_records()] == ["12", "13"]


def test_unknown_job_lists_recent_ones(tmp_path: Path) -> None:
    record_in(tmp_path, "12", "train", 100.0)
    with pytest.raises(LaunchError, match=r"No job '99'.*recent: 12 \(train-12\).*\n.*HINT"):
        records.find_record("99")


def test_deleted_run_dirs_and_torn_index_lines_are_skipped(tmp_path: Path) -> None:
    gone = record_in(tmp_path, "12", "a", 100.0)
    kept = record_in(tmp_path, "13", "b", 200.0)
    (Path(gone.run_dir) / records.RECORD_FILE).unlink()
    with records.index_path().open("a") as handle:
        handle.write('{"run_dir": "/x"')  # cut short by a crash
    assert records.all_records() == [kept]
    assert records.latest_record() == kept


def test_no_records() -> None:
    assert records.all_records() == [] and records.latest_record() is None


def test_a_record_keeps_where_it_was_launched_and_is_found_under_that_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, other = tmp_path / "project", tmp_path / "other"
    (project / "scripts").mkdir(parents=True)
    other.mkdir()
    monkeypatch.chdir(project / "scripts")
    run_dir = tmp_path / "scratch" / "run-1"  # a --run-root outside the project
    run_dir.mkdir(parents=True)
    record = records.new_record("7", "slurm", run_dir, "t", {})
    records.write_record(record)
    assert record.launch_dir == str(project / "scripts")
    assert records.read_record(run_dir).launch_dir == record.launch_dir
    assert records.records_under(project) == [record] and records.latest_record(project) == record
    assert records.records_under(project / "scripts") == [record]
    assert records.records_under(other) == [] and records.latest_record(other) is None
    assert records.records_under(tmp_path / "scratch") == [record]  # where its run dir lives counts too
    assert not record.launched_under(tmp_path / "proj")  # a name prefix is not a parent folder


def test_records_from_before_launch_dir_are_placed_by_their_run_dir(tmp_path: Path) -> None:
    old = record_in(tmp_path, "12", "train", 100.0)  # no launch_dir, as older fulmen wrote them
    assert old.launch_dir == "" and records.read_record(Path(old.run_dir)).launch_dir == ""
    assert records.records_under(tmp_path) == [old] and records.records_under(tmp_path / "elsewhere") == []
