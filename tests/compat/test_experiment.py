"""``fulmen.compat.Experiment`` on its own: test_tube's folder layout and files, reading an
existing version back, ``debug``/``autosave``; compared with the real test_tube where installed."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from fulmen.compat import Experiment


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _write_session(cls: type, save_dir: Path) -> Path:
    exp = cls(save_dir=str(save_dir), name="exp", description="d")
    exp.argparse(argparse.Namespace(lr=0.5, depth=3, act="relu", fn=print))
    exp.tag({"extra": "x"})
    exp.log({"loss": 1.5})
    exp.log({"loss": 1.0, "acc": 0.25}, global_step=7)
    exp.log({"group": {"a": 1.0, "b": 2.0}})
    exp.save()
    exp.close()
    return save_dir / "exp" / "version_0"


def test_files_follow_test_tubes_layout(tmp_path: Path) -> None:
    folder = _write_session(Experiment, tmp_path)
    expected = ["media", "meta.experiment", "meta_tags.csv", "metrics.csv", "tf"]
    assert sorted(p.name for p in folder.iterdir()) == expected
    assert any(p.name.startswith("events.out.tfevents") for p in (folder / "tf").iterdir())
    assert {r["key"]: r["value"] for r in _rows(folder / "meta_tags.csv")} == {
        "lr": "0.5", "depth": "3", "act": "relu", "extra": "x"
    }  # fmt: skip
    rows = _rows(folder / "metrics.csv")
    assert list(rows[0]) == ["loss", "created_at", "acc", "a", "b"]
    assert [(r["loss"], r["acc"], r["a"]) for r in rows] == [("1.5", "", ""), ("1.0", "0.25", ""), ("", "", "1.0")]
    meta = json.loads((folder / "meta.experiment").read_text())
    assert {k: meta[k] for k in ("name", "version", "description", "exp_hash", "autosave")} == {
        "name": "exp", "version": 0, "description": "d", "exp_hash": "exp_v0", "autosave": False
    }  # fmt: skip


def test_same_files_as_the_real_test_tube(tmp_path: Path) -> None:
    test_tube = pytest.importorskip("test_tube", reason="test_tube is optional and not installed here")
    ours, theirs = _write_session(Experiment, tmp_path / "ours"), _write_session(test_tube.Experiment, tmp_path / "tt")
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    drop_time = [{k: v for k, v in r.items() if k != "created_at"} for r in _rows(ours / "metrics.csv")]
    assert drop_time == [{k: v for k, v in r.items() if k != "created_at"} for r in _rows(theirs / "metrics.csv")]
    ours_tags = {r["key"]: r["value"] for r in _rows(ours / "meta_tags.csv")}
    theirs_tags = {r["key"]: r["value"] for r in _rows(theirs / "meta_tags.csv")}
    assert ours_tags.keys() == theirs_tags.keys()  # values: pandas writes the mixed column's 3 as "3.0"
    ours_meta, theirs_meta = (json.loads((f / "meta.experiment").read_text()) for f in (ours, theirs))
    assert ours_meta.keys() == theirs_meta.keys()


def test_given_version_reads_the_earlier_run_back_and_appends(tmp_path: Path) -> None:
    _write_session(Experiment, tmp_path)
    again = Experiment(save_dir=str(tmp_path), name="exp", version=0)
    assert again.tags == {"lr": 0.5, "depth": 3, "act": "relu", "extra": "x"}
    assert [m.get("loss") for m in again.metrics] == [1.5, 1.0, None]
    again.log({"loss": 0.5})
    again.save()
    assert [r["loss"] for r in _rows(tmp_path / "exp" / "version_0" / "metrics.csv")] == ["1.5", "1.0", "", "0.5"]
    assert Experiment(save_dir=str(tmp_path), name="exp").version == 1


def test_debug_writes_nothing_and_autosave_writes_on_every_call(tmp_path: Path) -> None:
    quiet = Experiment(save_dir=str(tmp_path / "debug"), name="exp", debug=True)
    quiet.log({"loss": 1.0})
    quiet.add_scalar("x", 1.0, 0)
    quiet.save()
    quiet.close()
    assert not (tmp_path / "debug").exists()

    eager = Experiment(save_dir=str(tmp_path / "auto"), name="exp", autosave=True)
    eager.log({"loss": 2.0})
    assert _rows(tmp_path / "auto" / "exp" / "version_0" / "metrics.csv")[0]["loss"] == "2.0"
    eager.close()


def test_default_save_dir_is_test_tube_data_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exp = Experiment(name="exp")
    exp.close()
    assert exp.get_data_path("exp", 0) == str(tmp_path / "test_tube_data" / "exp" / "version_0")
    assert (tmp_path / "test_tube_data" / "exp" / "version_0" / "tf").is_dir()


def test_only_global_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")  # what a launcher sets for the second rank
    other = Experiment(save_dir=str(tmp_path), name="exp")
    assert other.rank == 1
    other.tag({"lr": 1})
    other.log({"loss": 1.0})
    other.add_scalar("x", 1.0, 0)
    other.save()
    other.close()
    assert not tmp_path.joinpath("exp").exists()
    assert Experiment(save_dir=str(tmp_path), name="exp", rank=0).rank == 0
