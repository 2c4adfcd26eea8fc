"""The file writer checkpoints are written through."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from fulmen.runtime import bulk_writer, checkpoint_space
from fulmen.runtime import checkpoint as ck
from fulmen.runtime.bulk_writer import BulkFileWriter


def test_writer_loops_over_short_writes(tmp_path: Path) -> None:
    """A single write(2) may stop short (near 2 GiB); torch ignores the count, so we must not."""

    class ShortWrites:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def write(self, data: Any) -> int:
            return self.handle.write(bytes(data[:7]))  # at most 7 bytes per call

        def fileno(self) -> int:
            return self.handle.fileno()

        def flush(self) -> None:
            self.handle.flush()

    with open(tmp_path / "short.ckpt", "wb", buffering=0) as handle:
        torch.save({"w": torch.arange(100.0)}, BulkFileWriter(ShortWrites(handle)))
    assert torch.equal(ck.load_checkpoint(tmp_path / "short.ckpt")["w"], torch.arange(100.0))


def test_reserved_space_is_cut_to_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    with open(path, "wb", buffering=0) as handle:
        writer = BulkFileWriter(handle, expected_size=1 << 20)
        reserved = os.fstat(handle.fileno()).st_size
        writer.write(b"abc")
        writer.finish()
    assert path.read_bytes() == b"abc"
    if bulk_writer._FALLOCATE is not None and reserved == 0:
        pytest.skip("this filesystem cannot reserve space (fallocate unsupported)")
    assert reserved == 1 << 20 or bulk_writer._FALLOCATE is None


def test_large_checkpoint_file_is_byte_identical_to_torch_save(tmp_path: Path) -> None:
    """Reserving ~the size up front and cutting afterwards leaves exactly torch.save's bytes."""
    weights = torch.arange(3_000_000, dtype=torch.float32)  # 12 MB: above the reservation threshold
    obj = {"state_dict": {"w": weights, "view": weights[:10]}, "step": 3}
    assert checkpoint_space.expected_file_size(obj) >= weights.nbytes  # the view shares the storage: counted once
    assert checkpoint_space.expected_file_size(obj) < 2 * weights.nbytes
    path = ck.save_atomic(obj, tmp_path / "big.ckpt")
    reference = io.BytesIO()
    torch.save(obj, reference)
    assert path.read_bytes() == reference.getvalue()


def test_small_objects_reserve_nothing() -> None:
    assert checkpoint_space.expected_file_size({"w": torch.zeros(10)}) == 0
