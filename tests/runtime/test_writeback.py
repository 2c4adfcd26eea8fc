"""The early-writeback file wrapper used to write checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fulmen.runtime import checkpoint as ck
from fulmen.runtime.writeback import EarlyWritebackFile


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
        torch.save({"w": torch.arange(100.0)}, EarlyWritebackFile(ShortWrites(handle)))
    assert torch.equal(ck.load_checkpoint(tmp_path / "short.ckpt")["w"], torch.arange(100.0))
