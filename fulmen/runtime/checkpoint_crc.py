"""CRC32 checks of a torch checkpoint's zip records, fast enough to run on every load.

Why: ``torch.load`` does not verify the CRC32 each zip record carries (PyTorch builds miniz
without it), so a flipped bit in a tensor loads silently. ``zipfile.testzip`` checks them,
but on one core at about 3 GB/s, which would double a warm load (``torch.load`` copies at
~8 GB/s). Here the stored records are cut into chunks whose CRCs are computed on a thread
pool straight from an ``mmap`` of the file (the page cache is read without a copy) with
libdeflate's CRC32 where installed (about twice zlib 1.2's speed), else ``zlib.crc32`` (both
release the GIL) and combined per record (``crc32_combine``, zlib's
algorithm). ``start_record_check`` runs that while the caller's ``torch.load`` reads the
same file; ``RecordCheck.corrupt_record()`` then says which record, if any, fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import os
import struct
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 8 << 20  # bytes per CRC task: small enough to spread one big tensor over the pool
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header, 30 bytes
_MAX_WORKERS = 8
_pool: ThreadPoolExecutor | None = None


@dataclass(frozen=True)
class Record:
    """One zip record: its name, where its bytes start, how many, and the CRC32 they must have."""

    name: str
    offset: int
    size: int
    crc: int
    stored: bool  # False: compressed (torch never writes those); checked through zipfile


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """The records of the zip archive at ``path``, from its central directory and local headers.

    Raises ``zipfile.BadZipFile`` / ``OSError`` for a damaged archive (the caller names the file).
    """
    records = []
    with open(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
        for info in archive.infolist():
            handle.seek(info.header_offset)
            header = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
            if header[0] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"record {info.filename!r} has no local header")
            name_length, extra_length = header[9], header[10]
            offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            stored = info.compress_type == zipfile.ZIP_STORED
            records.append(Record(info.filename, offset, info.compress_size, info.CRC, stored))
    return records


def _gf2_times(matrix: tuple[int, ...], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _compose(outer: tuple[int, ...], inner: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_gf2_times(outer, column) for column in inner)


@functools.lru_cache(maxsize=256)
def _zeros_operator(length: int) -> tuple[int, ...]:
    """The GF(2) matrix that advances a CRC32 over ``length`` zero bytes (cached: chunks share lengths)."""
    operator: tuple[int, ...] = (0xEDB88320, *(1 << n for n in range(31)))  # one zero bit
    for _ in range(3):
        operator = _compose(operator, operator)  # one zero byte
    result: tuple[int, ...] = tuple(1 << n for n in range(32))
    while length:
        if length & 1:
            result = _compose(operator, result)
        length >>= 1
        if length:
            operator = _compose(operator, operator)
    return result


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's crc32_combine,
    which Python's zlib does not expose)."""
    if length2 <= 0:
        return crc1
    return _gf2_times(_zeros_operator(length2), crc1) ^ crc2


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_WORKERS, cpus))


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="fulmen-crc")
    return _pool


def _libdeflate_crc32() -> Any:
    """libdeflate's CRC32 (carry-less multiply: ~2x zlib 1.2's here) where the library is
    installed, else None. ctypes releases the GIL during the call, as zlib.crc32 does."""
    name = ctypes.util.find_library("deflate")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).libdeflate_crc32
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
    function.restype = ctypes.c_uint32
    return function


_FAST_CRC32 = _libdeflate_crc32()


def _chunk_crc(view: memoryview, base: int | None, start: int, stop: int) -> int:
    if base is not None and _FAST_CRC32 is not None:
        return int(_FAST_CRC32(0, base + start, stop - start))
    with view[start:stop] as chunk:
        return zlib.crc32(chunk)


class RecordCheck:
    """The CRC check of one file, running on the shared pool; ``corrupt_record()`` waits for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records = read_records(path)
        self._file = open(path, "rb")  # noqa: SIM115 - closed in corrupt_record
        size = os.fstat(self._file.fileno()).st_size
        # ACCESS_COPY: a private mapping, writable only so that ctypes can take its address;
        # nothing is ever written, so no page is copied and the file is never touched
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
        self._view = memoryview(self._map) if self._map is not None else memoryview(b"")
        self._anchor = ctypes.c_char.from_buffer(self._map) if self._map is not None else None
        base = ctypes.addressof(self._anchor) if self._anchor is not None else None
        pool = _shared_pool()
        self._tasks: list[tuple[Record, list[tuple[Future[int], int]]]] = []
        for record in self._records:
            if not record.stored:
                continue
            chunks = []
            for start in range(record.offset, record.offset + record.size, _CHUNK):
                stop = min(start + _CHUNK, record.offset + record.size)
                chunks.append((pool.submit(_chunk_crc, self._view, base, start, stop), stop - start))
            self._tasks.append((record, chunks))

    def corrupt_record(self) -> str | None:
        """The name of the first record whose bytes do not match its CRC32, or None."""
        bad = None
        try:
            for record, chunks in self._tasks:
                crc = chunks[0][0].result() if chunks else 0
                for future, length in chunks[1:]:
                    crc = crc32_combine(crc, future.result(), length)
                if bad is None and crc != record.crc:
                    bad = record.name
            if bad is None:
                bad = self._compressed_corrupt_record()
        finally:
            for _, chunks in self._tasks:  # the views must be released before the map closes
                for future, _ in chunks:
                    future.cancel()
                    if not future.cancelled():
                        future.exception()
            self._view.release()
            self._anchor = None  # the ctypes export must go before the map can close
            if self._map is not None:
                self._map.close()
            self._file.close()
        return bad

    def _compressed_corrupt_record(self) -> str | None:
        compressed = [record.name for record in self._records if not record.stored]
        if not compressed:
            return None
        with zipfile.ZipFile(self.path) as archive:
            for name in compressed:
                try:
                    with archive.open(name) as member:
                        while member.read(_CHUNK):
                            pass
                except (zipfile.BadZipFile, zlib.error):  # CRC mismatch, or a stream that no longer inflates
                    return name
        return None


def start_record_check(path: str | os.PathLike[str]) -> RecordCheck:
    """Begin checking every record's CRC32 of the zip checkpoint at ``path`` in the background."""
    return RecordCheck(Path(path))
