"""Run directory layout, spec round trip, log rotation on restart."""

from __future__ import annotations

from pathlib import Path

from fulmen.jobs import rundir
from fulmen.jobs.spec import JobSpec


def test_run_dir_is_named_after_job_and_id(tmp_path: Path) -> None:
    spec = JobSpec(entry="train/my script.py", run_root=str(tmp_path))
    path = rundir.run_dir_for(spec, "20260101-000000-abcd")
    assert path == (tmp_path / "my_script-20260101-000000-abcd").resolve()


def test_explicit_run_dir_wins(tmp_path: Path) -> None:
    spec = JobSpec(entry="t.py", run_dir=str(tmp_path / "mine"))
    assert rundir.run_dir_for(spec, "ignored") == (tmp_path / "mine").resolve()


def test_run_ids_are_unique() -> None:
    assert len({rundir.new_run_id() for _ in range(100)}) == 100


def test_prepare_writes_layout_and_spec_round_trips(tmp_path: Path) -> None:
    spec = JobSpec(entry="t.py", args=("--lr", "0.1"), nproc_per_node=2, env=(("A", "1"),))
    run_dir = rundir.prepare_run_dir(spec, tmp_path / "run")
    assert (run_dir / "logs").is_dir()
    assert not (run_dir / "checkpoints").exists()  # no empty folder next to lightning_logs/ (issue #14)
    assert rundir.read_spec(run_dir) == spec
    rundir.prepare_run_dir(spec, run_dir)  # reusing a run dir (restart, relaunch) is fine
    assert not list(run_dir.glob(".spec.json*"))


def test_rotate_keeps_previous_attempts(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = rundir.rotate_rank_log(tmp_path, 1)
    assert log == tmp_path / "logs" / "rank_1.log" and not log.exists()
    log.write_text("first\n")
    rundir.rotate_rank_log(tmp_path, 1).write_text("second\n")
    rundir.rotate_rank_log(tmp_path, 1)
    assert (tmp_path / "logs" / "rank_1.attempt_0.log").read_text() == "first\n"
    assert (tmp_path / "logs" / "rank_1.attempt_1.log").read_text() == "second\n"


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert rundir.tail(path, 3) == "line 97\nline 98\nline 99"
    assert rundir.tail(tmp_path / "missing.log") == ""


def test_run_records_are_owner_only_and_hold_no_secret_values(tmp_path: Path, monkeypatch) -> None:
    import os
    import stat

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    spec = JobSpec(entry="t.py", args=("--token", "tok-123"), env=(("HF_TOKEN", "hf_secret"), ("A", "1")),
                   run_dir=str(tmp_path / "run"))  # fmt: skip
    run = rundir.new_run(spec)
    previous = os.umask(0o022)  # the usual umask, which gave 0644 records and 0755 folders before
    try:
        run_dir = run.create()
        record = run.record("7", "local")
    finally:
        os.umask(previous)
    for path in (run_dir / "spec.json", record.path, tmp_path / "state" / "fulmen" / "jobs.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (run_dir, run_dir / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in (run_dir / "spec.json", record.path):
        text = path.read_text()
        assert "hf_secret" not in text and "tok-123" not in text and "HF_TOKEN" in text and '"1"' in text
