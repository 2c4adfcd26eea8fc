"""The parallel CRC32 check of a checkpoint's zip records agrees with zlib and zipfile."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from fulmen.runtime import checkpoint_crc as crc


@pytest.mark.parametrize("length", [1, 3, 4096, 8 << 20, 12_345_677])
def test_crc32_combine_matches_zlib_over_the_joined_bytes(length: int) -> None:
    head, tail = os.urandom(999), os.urandom(length)
    assert crc.crc32_combine(zlib.crc32(head), zlib.crc32(tail), length) == zlib.crc32(head + tail)


def test_records_and_their_offsets_match_zipfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crc, "_CHUNK", 1000)  # many chunks per record: the combine path
    path = tmp_path / "a.ckpt"
    torch.save({"a": torch.arange(10_000), "b": torch.ones(3)}, path)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for record in crc.read_records(path):
            assert data[record.offset : record.offset + record.size] == archive.read(record.name)
    assert crc.start_record_check(path).corrupt_record() is None


def test_a_compressed_record_is_checked_through_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("z/data.pkl", b"x" * 10_000)
    data = bytearray(path.read_bytes())
    (record,) = crc.read_records(path)
    assert not record.stored
    data[record.offset + record.size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    assert crc.start_record_check(path).corrupt_record() == "z/data.pkl"
