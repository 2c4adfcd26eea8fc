"""Checkpoint file I/O: atomic save, checked load, resume checkpoint search."""

from __future__ import annotations

import argparse
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from fulmen.errors import CheckpointError
from fulmen.runtime import checkpoint as ck
from fulmen.runtime import checkpoint_recovery as recovery
from tests.runtime.full_disk import small_tmpfs  # noqa: F401 - fixture


def _payload(step: int) -> dict:
    return {"global_step": step, "epoch": 0, "state_dict": {"w": torch.full((64, 64), float(step))}}


def test_save_atomic_writes_loadable_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.ckpt"
    ck.save_atomic(_payload(3), target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.ckpt"]
    loaded = ck.load_checkpoint(target)
    assert loaded["global_step"] == 3
    assert torch.equal(loaded["state_dict"]["w"], torch.full((64, 64), 3.0))


def test_save_atomic_failure_keeps_previous_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.ckpt"
    ck.save_atomic(_payload(1), target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        ck.save_atomic({"bad": Unpicklable()}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]
    assert ck.load_checkpoint(target)["global_step"] == 1


def test_missing_file_error_names_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.ckpt.*does not exist"):
        ck.load_checkpoint(tmp_path / "nope.ckpt")


def test_empty_file_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.ckpt.*empty \(0 bytes\)"):
        ck.load_checkpoint(path)


@pytest.mark.parametrize("keep_fraction", [0.1, 0.5, 0.99])
def test_truncated_file_error_names_file(tmp_path: Path, keep_fraction: float) -> None:
    good = tmp_path / "good.ckpt"
    ck.save_atomic(_payload(5), good)
    data = good.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt.*truncated"):
        ck.load_checkpoint(cut)


def test_not_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("hello world")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt.*not a torch checkpoint"):
        ck.load_checkpoint(path)


def test_corrupted_tensor_bytes_are_caught_by_checksum(tmp_path: Path) -> None:
    path = tmp_path / "flip.ckpt"
    ck.save_atomic(_payload(7), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor record
    path.write_bytes(bytes(data))
    # torch.load itself does not notice; the CRC32 check does and names the record
    with pytest.raises(CheckpointError, match=r"flip\.ckpt.*corrupted.*CRC32"):
        ck.load_checkpoint(path, verify_checksums=True)


@pytest.mark.parametrize("where", [0.05, 0.5, 0.97])
def test_every_load_checks_crcs_and_names_the_file_and_the_record(tmp_path: Path, where: float) -> None:
    """Issue 16.5: a flipped bit anywhere in a tensor (here one of 12 MB, several CRC chunks)
    fails a plain load, not only the resume search."""
    path = tmp_path / "flip.ckpt"
    ck.save_atomic({"state_dict": {"w": torch.arange(3_000_000, dtype=torch.float32)}, "global_step": 1}, path)
    assert torch.equal(ck.load_checkpoint(path)["state_dict"]["w"], torch.arange(3_000_000, dtype=torch.float32))
    with zipfile.ZipFile(path) as archive:
        (info,) = [i for i in archive.infolist() if i.filename.endswith("/data/0")]
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<2H", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length  # the tensor's first byte
    data[start + int(where * info.file_size)] ^= 0x01
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch.load is silent about it
    record = re.escape(info.filename)
    with pytest.raises(CheckpointError, match=rf"flip\.ckpt.* record '{record}' fails its CRC32"):
        ck.load_checkpoint(path)


def test_corrupted_pickle_record_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "pkl.ckpt"
    ck.save_atomic(_payload(7), path)
    data = bytearray(path.read_bytes())
    offset = data.index(b"data.pkl") + 60  # bytes of the pickle stream itself
    for i in range(offset, offset + 8):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"pkl\.ckpt.*corrupted"):
        ck.load_checkpoint(path)


def test_safe_loader_refuses_python_objects_and_says_how_to_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "ns.ckpt"
    torch.save({"hyper_parameters": argparse.Namespace(lr=0.1), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"ns\.ckpt(.|\n)*argparse\.Namespace(.|\n)*unsafe_full_unpickle=True"):
        ck.load_checkpoint(path)
    loaded = ck.load_checkpoint(path, unsafe_full_unpickle=True)
    assert loaded["hyper_parameters"].lr == 0.1
    # the narrower opt-in the message also names: allow exactly the classes the file needs
    with pytest.raises(CheckpointError, match=r"add_safe_globals\(\[argparse\.Namespace\]\)"):
        ck.load_checkpoint(path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert ck.load_checkpoint(path)["hyper_parameters"].lr == 0.1


def test_non_dict_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match=r"tensor\.ckpt.*holds a Tensor, expected a dict"):
        ck.load_checkpoint(path)


def test_require_keys_lists_missing_and_present(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"x\.ckpt.*\['optimizer_states'\].*\['state_dict'\]"):
        ck.require_keys({"state_dict": {}}, ("state_dict", "optimizer_states"), tmp_path / "x.ckpt", "resume")


def test_remove_stale_temp_files_keeps_live_writers(tmp_path: Path) -> None:
    dead = tmp_path / f".a.ckpt.fulmen-tmp-{2**22 + 12345}-dead"
    live = tmp_path / f".a.ckpt.fulmen-tmp-{os.getpid()}-live"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    removed = recovery.remove_stale_temp_files(tmp_path)
    assert removed == [dead]
    assert live.exists()


def _dead_pid() -> int:
    """A pid that belonged to a process which has exited (and was reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _unfinished(final: Path, obj: Any, pid: int, host: str | None = None) -> Path:
    """The temp file a killed writer leaves: ``obj`` fully written under the temp name of ``final``."""
    temp = final.parent / f".{final.name}.fulmen-tmp-{pid}-{host or ck.host_tag()}-0123abcd"
    torch.save(obj, temp)
    return temp


def test_recover_moves_a_complete_temp_file_of_a_dead_writer_into_place(tmp_path: Path) -> None:
    temp = _unfinished(tmp_path / "epoch=1-step=17.ckpt", {"global_step": 17}, _dead_pid())
    with pytest.warns(RuntimeWarning, match=r"Recovered checkpoint .*epoch=1-step=17\.ckpt.*killed"):
        recovered = recovery.recover_unfinished_saves(tmp_path)
    assert recovered == [tmp_path / "epoch=1-step=17.ckpt"] and not temp.exists()
    assert ck.load_checkpoint(recovered[0])["global_step"] == 17


def test_recover_deletes_an_incomplete_temp_file_and_keeps_the_final_one(tmp_path: Path) -> None:
    ck.save_atomic({"v": "previous"}, tmp_path / "last.ckpt")
    temp = _unfinished(tmp_path / "last.ckpt", {"v": "new", "w": torch.zeros(1000)}, _dead_pid())
    temp.write_bytes(temp.read_bytes()[:-100])  # killed while writing
    assert recovery.recover_unfinished_saves(tmp_path) == []
    assert not temp.exists() and ck.load_checkpoint(tmp_path / "last.ckpt")["v"] == "previous"


def test_recover_never_replaces_a_newer_final_file(tmp_path: Path) -> None:
    temp = _unfinished(tmp_path / "last.ckpt", {"v": "older"}, _dead_pid())
    os.utime(temp, (1_000_000, 1_000_000))  # the killed run wrote it long before the restart saved
    ck.save_atomic({"v": "newer"}, tmp_path / "last.ckpt")
    assert recovery.recover_unfinished_saves(tmp_path) == []
    assert not temp.exists() and ck.load_checkpoint(tmp_path / "last.ckpt")["v"] == "newer"


def test_recover_leaves_live_writers_alone(tmp_path: Path) -> None:
    mine = _unfinished(tmp_path / "a.ckpt", {"v": 1}, os.getpid())
    foreign_recent = _unfinished(tmp_path / "b.ckpt", {"v": 2}, _dead_pid(), host="ffffffff")
    foreign_old = _unfinished(tmp_path / "c.ckpt", {"v": 3}, 1, host="ffffffff")
    os.utime(foreign_old, (1_000_000, 1_000_000))  # another machine's writer gone for ages
    with pytest.warns(RuntimeWarning, match=r"c\.ckpt"):
        assert recovery.recover_unfinished_saves(tmp_path) == [tmp_path / "c.ckpt"]
    assert mine.exists() and foreign_recent.exists()
    assert not (tmp_path / "a.ckpt").exists() and not (tmp_path / "b.ckpt").exists()


def test_loading_a_missing_file_finishes_a_save_a_killed_process_left(tmp_path: Path) -> None:
    _unfinished(tmp_path / "epoch=0.ckpt", {"global_step": 3}, _dead_pid())
    with pytest.warns(RuntimeWarning, match="Recovered checkpoint"):
        assert ck.load_checkpoint(tmp_path / "epoch=0.ckpt")["global_step"] == 3


def test_full_disk_error_names_the_file_the_size_needed_and_the_space_free(small_tmpfs: Path) -> None:  # noqa: F811
    """Issue 16.8: not torch's "[enforce fail at inline_container.cc] unexpected pos"."""
    path = small_tmpfs / "big.ckpt"
    ck.save_atomic({"w": torch.zeros(10)}, path)
    with pytest.raises(CheckpointError) as info:
        ck.save_atomic({"w": torch.zeros(600_000)}, path)  # 2.3 MiB on a 1 MiB disk
    message = str(info.value)
    assert re.search(r"no space left on device while writing '.*big\.ckpt' \(needed ~2\.4 MB, \d+\.\d MB free", message)
    assert "inline_container" not in message
    assert ck.load_checkpoint(path)["w"].numel() == 10  # the earlier file is intact
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["big.ckpt"]  # no temp file left


def test_disk_quota_error_is_named_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from fulmen.runtime import bulk_writer

    def refuse(self: Any, data: Any) -> int:
        self.error = OSError(errno.EDQUOT, "Disk quota exceeded")
        raise self.error

    monkeypatch.setattr(bulk_writer.BulkFileWriter, "write", refuse)
    with pytest.raises(CheckpointError, match=r"disk quota exceeded while writing .*q\.ckpt"):
        ck.save_atomic({"w": torch.zeros(10)}, tmp_path / "q.ckpt")
