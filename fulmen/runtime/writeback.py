"""A file wrapper that starts the disk writeback of what was written while writing goes on.

Used by ``checkpoint.write_temp``: the fsync of a checkpoint then waits only for its tail
instead of the whole file, so serialising and the disk overlap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any


def _load_sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None where it does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages in the range, do not wait
_WRITEBACK_CHUNK = 64 << 20


class EarlyWritebackFile:
    """A write-only file that asks the kernel to start writing each 64 MiB to disk right away.

    The final fsync then waits only for the tail instead of the whole file: writing and the
    disk overlap. (bench/checkpoint_io.py, 576 MB, a shared and busy disk: write-then-fsync
    took about 4x a plain ``torch.save``, this about 2x; the disk's speed is the floor.)
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._fd = handle.fileno()
        self._written = 0
        self._started = 0

    def write(self, data: Any) -> int:
        # an unbuffered file may write less than asked (a single write(2) stops near 2 GiB):
        # loop, because torch's writer does not look at the returned count
        view = memoryview(data).cast("B")
        count = 0
        while count < len(view):
            count += self._handle.write(view[count:])
        self._written += count
        if _SYNC_FILE_RANGE is not None and self._written - self._started >= _WRITEBACK_CHUNK:
            _SYNC_FILE_RANGE(self._fd, self._started, self._written - self._started, _SYNC_FILE_RANGE_WRITE)
            self._started = self._written
        return count

    def flush(self) -> None:
        self._handle.flush()
