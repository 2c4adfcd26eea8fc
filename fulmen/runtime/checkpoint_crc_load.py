"""``torch.load`` that checks every zip record's CRC32 in the same pass that reads its bytes.

Why: the two-pass check (``checkpoint_crc.RecordCheck``, the CRCs computed from an mmap of the
file beside a plain ``torch.load``) costs 0.04-0.05 s of CPU per 576 MB (~13 GB/s from memory),
free where a core is idle but 20-35% of a load where none is (bench/checkpoint_io.py on this
project's shared 2-core machine: 1.2-1.3x raw). Here ``torch.load(mmap=True)`` maps the file and
a ``map_location`` hook gets each storage as a slice of that mapping: it finds the slice's file
offset (torch's mapping in ``/proc/self/maps``), allocates the storage's own memory, reads the
bytes into it with ``preadv`` in 1 MiB pieces (the mapping's pages are never touched: no page
faults on it; without the offset it copies from the mapping) and CRCs each piece right after its
read, while it is in the CPU cache, with ISA-L's CRC32 (``isal``: ~90 GB/s on cached data here, ~6 ms per
576 MB; libdeflate does ~28 GB/s, zlib ~5.5). The result is an ordinary in-memory checkpoint,
as ``torch.load(path)`` returns, not a mapped one (Adam's state would be copied page by page on
its first write, see bench/checkpoint_io.py; and the file may change after the load). Without
``isal`` the inline CRC would cost more than the two-pass check beside the load, so
``usable`` says no and the caller uses that.

Which record a storage is: torch slices the one mapping at each record's offset, so a storage's
address minus the mapping's start is its record's offset (where ``/proc/self/maps`` is not
readable, the start is taken as the lowest address minus the lowest data offset); every storage
must land on a record of its size, else the whole file is checked the two-pass way. Records that are not storages (the pickle, ``version``, ...)
are small and read again. Storages that ``map_location`` sends elsewhere (a GPU) are CRC'd from
the mapping. Files whose byte order differs from this machine's (torch swaps the mapped bytes in
place before the hook) and compressed archives keep the two-pass check.
"""

from __future__ import annotations

import ctypes
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fulmen.runtime import checkpoint_crc
from fulmen.runtime.checkpoint_crc import Record, read_records

_PIECE = 1 << 20  # copied, then CRC'd while still in the cache


try:
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - a platform without its wheel: the two-pass check
    _isal = None


def _crc_at(address: int, length: int, crc: int = 0) -> int:
    view = memoryview((ctypes.c_char * length).from_address(address))
    if _isal is not None:
        return int(_isal.crc32(view, crc))
    return zlib.crc32(view, crc)  # pragma: no cover - usable() needs isal


def _copy_with_crc(source: int, target: int, length: int) -> int:
    """Copy ``length`` bytes and return their CRC32 (each piece CRC'd right after its copy,
    while it is still in the cache: the bytes come from memory once)."""
    crc = 0
    for start in range(0, length, _PIECE):
        n = min(_PIECE, length - start)
        ctypes.memmove(target + start, source + start, n)
        crc = _crc_at(target + start, n, crc)
    return crc


def _read_with_crc(fd: int, offset: int, target: int, length: int) -> int:
    """Read ``length`` bytes at ``offset`` into ``target`` and return their CRC32 (each piece
    CRC'd right after its read, while it is in the cache)."""
    crc = 0
    for start in range(0, length, _PIECE):
        n = min(_PIECE, length - start)
        view = memoryview((ctypes.c_char * n).from_address(target + start)).cast("B")
        done = 0
        while done < n:
            got = os.preadv(fd, [view[done:]], offset + start + done)
            if got == 0:
                raise EOFError(f"the file ended {offset + start + done} bytes in, inside a record")
            done += got
        crc = _crc_at(target + start, n, crc)
    return crc


def _mapping_of(address: int, file: os.stat_result) -> list[tuple[int, int, int]]:
    """``[(start, end, file offset)]`` of the mapping of ``file`` that holds ``address``
    (``/proc/self/maps``), or ``[]`` where that cannot be read."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) < 5 or int(fields[4]) != file.st_ino:
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if start <= address < end:
                    major, minor = (int(x, 16) for x in fields[3].split(":"))
                    if os.makedev(major, minor) == file.st_dev:
                        return [(start, end, int(fields[2], 16))]
    except (OSError, ValueError):
        pass
    return []


def _torch_restore(map_location: Any) -> Callable[[Any, str], Any]:
    """Where torch would put a storage for ``map_location`` (``torch.load``'s own rules)."""
    restore = torch.serialization.default_restore_location
    if map_location is None:
        return restore
    if isinstance(map_location, dict):
        return lambda storage, location: restore(storage, map_location.get(location, location))
    if isinstance(map_location, (str, bytes, torch.device)):
        target = map_location.decode() if isinstance(map_location, bytes) else str(map_location)
        return lambda storage, location: restore(storage, target)

    def custom(storage: Any, location: str) -> Any:
        result = map_location(storage, location)
        return restore(storage, location) if result is None else result

    return custom


class CheckedLoad:
    """One file's load with its CRC check fused in: ``load()``, then ``corrupt_record()``."""

    def __init__(self, path: Path, records: list[Record]) -> None:
        self.path = path
        self.records = records
        # per storage: its file offset (or address in the mapping), size, CRC32, whether the offset is known
        self._loaded: list[tuple[int, int, int, bool]] = []

    @staticmethod
    def usable(path: Path) -> CheckedLoad | None:
        """A fused load for ``path``, or None where the two-pass check must be used instead.

        Raises ``zipfile.BadZipFile`` / ``OSError`` for an archive whose records cannot be read.
        """
        if _isal is None:
            return None
        records = read_records(path)
        if not records or not all(record.stored for record in records):
            return None
        order = next((r for r in records if r.name.endswith("/byteorder") and r.name.count("/") == 1), None)
        if order is not None:
            with open(path, "rb") as handle:
                handle.seek(order.offset)
                if handle.read(order.size).decode("ascii", "replace") != sys.byteorder:
                    return None
        return CheckedLoad(path, records)

    def load(self, map_location: Any, weights_only: bool) -> Any:
        """``torch.load`` of the file, each storage read (or sent on) and CRC'd once."""
        restore = _torch_restore(map_location)
        with open(self.path, "rb", buffering=0) as handle:
            file = os.fstat(handle.fileno())
            mapping: list[tuple[int, int, int]] = []  # torch's mapping of the file: start, end, file offset

            def place(storage: Any, location: str) -> Any:
                length = storage.nbytes()
                placed = restore(storage, location)
                if length == 0:
                    return placed
                source = storage.data_ptr()
                if not mapping or not mapping[0][0] <= source < mapping[0][1]:
                    mapping[:] = _mapping_of(source, file)
                offset = source - mapping[0][0] + mapping[0][2] if mapping else None
                if placed.device.type == "cpu" and placed.data_ptr() == source:  # still the mapping: own memory
                    placed = torch.UntypedStorage(length)
                    if offset is not None:  # read with read(), as torch.load(path) does: no page faults on a mapping
                        crc = _read_with_crc(handle.fileno(), offset, placed.data_ptr(), length)
                    else:
                        crc = _copy_with_crc(source, placed.data_ptr(), length)
                else:  # torch copied it elsewhere (a GPU): the mapping's bytes
                    crc = _crc_at(source, length)
                self._loaded.append((source if offset is None else offset, length, crc, offset is not None))
                return placed

            return torch.load(str(self.path), map_location=place, weights_only=weights_only, mmap=True)

    def corrupt_record(self) -> str | None:
        """The first record whose bytes fail their CRC32, or None (after ``load``)."""
        data = [r for r in self.records if r.size > 0 and "/data/" in r.name]  # "<archive>/data/<key>"
        by_offset = {r.offset: r for r in data}
        if len(self._loaded) != len(data):  # a storage the pickle never named: check every record
            return checkpoint_crc.start_record_check(self.path).corrupt_record()
        found: dict[int, int] = {}
        unplaced = [where for where, _, _, known in self._loaded if not known]
        base = min(unplaced) - min(by_offset) if unplaced else 0
        for where, length, crc, known in self._loaded:
            record = by_offset.get(where if known else where - base)
            if record is None or record.size != length:
                return checkpoint_crc.start_record_check(self.path).corrupt_record()
            found[record.offset] = crc
        for record in data:
            if found[record.offset] != record.crc:
                return record.name
        return _first_bad_small_record(self.path, [r for r in self.records if r.offset not in found])


def _first_bad_small_record(path: Path, records: list[Record]) -> str | None:
    """Check the records that are not storages (the pickle, version, ...) from the file."""
    with open(path, "rb") as handle:
        for record in records:
            handle.seek(record.offset)
            if zlib.crc32(handle.read(record.size)) != record.crc:
                return record.name
    return None
