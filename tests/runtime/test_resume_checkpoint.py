"""The resume checkpoint of a run: names, the ``last`` pointer, pruning, and the search."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fulmen.runtime import checkpoint as ck
from fulmen.runtime import resume_checkpoint as rc


def _unfinished_resume_save(final: Path, obj: dict) -> Path:
    """The complete temp file a writer killed before its rename leaves (its pid: a finished process)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    temp = final.parent / f".{final.name}.fulmen-tmp-{child.pid}-{ck.host_tag()}-0123abcd"
    torch.save(obj, temp)
    return temp


def _payload(step: int) -> dict:
    return {"global_step": step, "epoch": 0, "state_dict": {"w": torch.full((64, 64), float(step))}}


def test_last_pointer_round_trip_and_garbage(tmp_path: Path) -> None:
    assert rc.read_last_pointer(tmp_path) is None
    rc.write_last_pointer(tmp_path, tmp_path / "resume-step=000000000004.ckpt")
    assert rc.read_last_pointer(tmp_path) == tmp_path / "resume-step=000000000004.ckpt"
    (tmp_path / "last").write_text("../escape.ckpt")
    assert rc.read_last_pointer(tmp_path) is None


def test_resume_dir_layout(tmp_path: Path) -> None:
    assert rc.resume_checkpoint_dir(tmp_path) == tmp_path / "checkpoints" / "resume"
    assert rc.find_resume_checkpoint(tmp_path) is None


def test_save_resume_checkpoint_keeps_two_newest_and_points_last(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        written = rc.save_resume_checkpoint(_payload(step), tmp_path)
    directory = rc.resume_checkpoint_dir(tmp_path)
    assert sorted(p.name for p in directory.iterdir()) == [
        "last",
        "resume-step=000000000004.ckpt",
        "resume-step=000000000006.ckpt",
    ]
    assert rc.read_last_pointer(directory) == written
    assert rc.find_resume_checkpoint(tmp_path) == written


def test_find_resume_skips_corrupted_newest_with_warning(tmp_path: Path) -> None:
    rc.save_resume_checkpoint(_payload(4), tmp_path)
    newest = rc.save_resume_checkpoint(_payload(6), tmp_path)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"resume-step=000000000006\.ckpt.*corrupted"):
        found = rc.find_resume_checkpoint(tmp_path)
    assert found is not None and found.name == "resume-step=000000000004.ckpt"
    assert ck.load_checkpoint(found)["global_step"] == 4


def test_find_resume_skips_truncated_and_ignores_temp_files(tmp_path: Path) -> None:
    rc.save_resume_checkpoint(_payload(4), tmp_path)
    directory = rc.resume_checkpoint_dir(tmp_path)
    good = directory / rc.resume_checkpoint_name(4)
    bad = directory / rc.resume_checkpoint_name(8)
    bad.write_bytes(good.read_bytes()[:100])
    (directory / ".resume-step=000000000010.ckpt.fulmen-tmp-999999-abc").write_bytes(b"partial")
    with pytest.warns(RuntimeWarning, match=r"resume-step=000000000008\.ckpt.*truncated"):
        assert rc.find_resume_checkpoint(tmp_path) == good


def test_find_resume_recovers_the_newest_unfinished_save(tmp_path: Path) -> None:
    rc.save_resume_checkpoint(_payload(4), tmp_path)
    directory = rc.resume_checkpoint_dir(tmp_path)
    _unfinished_resume_save(directory / rc.resume_checkpoint_name(6), _payload(6))
    with pytest.warns(RuntimeWarning, match="Recovered checkpoint"):
        found = rc.find_resume_checkpoint(tmp_path)
    assert found == directory / rc.resume_checkpoint_name(6)


def test_remove_resume_checkpoints_clears_files_pointer_and_empty_folders(tmp_path: Path) -> None:
    rc.save_resume_checkpoint(_payload(4), tmp_path)
    rc.save_resume_checkpoint(_payload(8), tmp_path)
    removed = rc.remove_resume_checkpoints(tmp_path)
    assert sorted(p.name for p in removed) == [rc.resume_checkpoint_name(4), rc.resume_checkpoint_name(8)]
    assert not (tmp_path / "checkpoints").exists()
    assert rc.remove_resume_checkpoints(tmp_path) == []  # nothing left: a no-op


def test_remove_resume_checkpoints_keeps_model_checkpoint_files_beside_them(tmp_path: Path) -> None:
    rc.save_resume_checkpoint(_payload(4), tmp_path)
    kept = tmp_path / "checkpoints" / "epoch=0-step=4.ckpt"  # ModelCheckpoint's place with logger=False
    torch.save(_payload(4), kept)
    rc.remove_resume_checkpoints(tmp_path)
    assert not rc.resume_checkpoint_dir(tmp_path).exists() and kept.exists()
