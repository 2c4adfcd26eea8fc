"""Code snapshot: what is copied, what is not, and that later edits do not leak in."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs import snapshot


def make_project(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("VERSION = 1\n")
    (root / "pkg" / "model.py").write_text("X = 1\n")
    (root / "config.yaml").write_text("lr: 0.1\n")
    (root / "weights.bin").write_bytes(b"\0" * 10)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"x")
    (root / "myenv").mkdir()
    (root / "myenv" / "pyvenv.cfg").write_text("home=/usr\n")
    (root / "myenv" / "lib.py").write_text("")


def test_copies_sources_and_skips_the_rest(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    make_project(project)
    run_dir = project / "fulmen_runs" / "train-1"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text("{}")
    snap = snapshot.snapshot_code("train.py", run_dir, cwd=project)
    copied = sorted(str(p.relative_to(snap.code_dir)) for p in snap.code_dir.rglob("*") if p.is_file())
    assert copied == ["config.yaml", "pkg/model.py", "train.py"]
    assert snap.entry == "train.py" and snap.source_root == project.resolve()


def test_later_edits_do_not_change_the_snapshot(tmp_path: Path) -> None:
    make_project(tmp_path / "proj")
    snap = snapshot.snapshot_code("train.py", tmp_path / "run", cwd=tmp_path / "proj")
    (tmp_path / "proj" / "train.py").write_text("VERSION = 2\n")
    assert (snap.code_dir / "train.py").read_text() == "VERSION = 1\n"


def test_script_outside_cwd_snapshots_its_folder(tmp_path: Path) -> None:
    make_project(tmp_path / "proj")
    (tmp_path / "elsewhere").mkdir()
    snap = snapshot.snapshot_code(str(tmp_path / "proj" / "pkg" / "model.py"), tmp_path / "run", cwd=tmp_path / "elsewhere")
    assert snap.entry == "model.py"
    assert (snap.code_dir / "model.py").is_file()


def test_script_without_py_suffix_is_still_copied(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "runme").write_text("print(1)\n")
    snap = snapshot.snapshot_code("runme", tmp_path / "run", cwd=tmp_path / "proj")
    assert (snap.code_dir / "runme").read_text() == "print(1)\n"


def test_too_much_code_is_an_error_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(tmp_path / "proj")
    monkeypatch.setattr(snapshot, "MAX_FILES", 2)
    with pytest.raises(LaunchError, match="grew past 2 files.*\n.*HINT"):
        snapshot.snapshot_code("train.py", tmp_path / "run", cwd=tmp_path / "proj")
