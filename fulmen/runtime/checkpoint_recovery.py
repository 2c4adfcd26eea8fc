"""Finishing what killed writers left behind: temp files of saves that never got renamed.

A save is ``write_temp`` then ``move_into_place`` (``checkpoint``); a process killed between
the two leaves a complete file under its temp name. ``recover_unfinished_saves`` checks such a
file (zip structure and every CRC32) and renames it into place; ``remove_stale_temp_files``
deletes the leftovers of dead writers. A temp file whose writer is alive is never touched.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from fulmen.errors import CheckpointError
from fulmen.runtime.checkpoint import TEMP_MARK, TEMP_NAME, PathLike, check_checkpoint_file, host_tag, move_into_place

# a temp file another machine writes is judged by age: no writer leaves one untouched this long
_FOREIGN_WRITER_GRACE_S = 120.0


def _abandoned_temp_files(folder: Path) -> list[tuple[Path, str | None]]:
    """Temp files in ``folder`` whose writer is gone, oldest first, with the name each was for.

    The name is None for temp files that are not a checkpoint's (old formats, link swaps).
    """
    found: list[tuple[int, Path, str | None]] = []
    for entry in folder.iterdir():
        if TEMP_MARK not in entry.name:
            continue
        match = TEMP_NAME.match(entry.name)
        try:
            mtime = entry.lstat().st_mtime_ns
        except FileNotFoundError:
            continue  # its writer just renamed or removed it
        if match is None:
            pid_text = entry.name.split(TEMP_MARK, 1)[1].split("-", 1)[0]
            if not (pid_text.isdigit() and _pid_alive(int(pid_text))):
                found.append((mtime, entry, None))
            continue
        if match["host"] == host_tag():
            alive = _pid_alive(int(match["pid"]))
        else:
            alive = time.time() - mtime / 1e9 < _FOREIGN_WRITER_GRACE_S
        if not alive:
            found.append((mtime, entry, match["final"]))
    return [(entry, final) for _, entry, final in sorted(found, key=lambda item: item[0])]


def remove_stale_temp_files(directory: PathLike) -> list[Path]:
    """Delete temporary files that killed writers left in ``directory`` (none of ours is live).

    A temp file whose writer is still alive (this process included) is kept.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    removed = []
    for entry, _ in _abandoned_temp_files(folder):
        entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def recover_unfinished_saves(directory: PathLike) -> list[Path]:
    """Finish the saves that killed processes left in ``directory``; return the files recovered.

    A background save (``checkpoint_saver``) renames its temp file only after the fsync, so a
    process killed right after saving can leave a complete checkpoint under its temp name.
    Such a file is checked (zip structure and every CRC32), fsynced and renamed into place,
    unless the final name already holds a newer file. Incomplete or broken temp files of dead
    writers are deleted. Safe to run from several processes at once.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    recovered: list[Path] = []
    for temp, final_name in _abandoned_temp_files(folder):
        if final_name is None:
            temp.unlink(missing_ok=True)
            continue
        final = folder / final_name
        try:
            check_checkpoint_file(temp, verify_checksums=True)
            superseded = final.exists() and final.stat().st_mtime_ns >= temp.stat().st_mtime_ns
        except (CheckpointError, FileNotFoundError):
            temp.unlink(missing_ok=True)
            continue
        if superseded:
            temp.unlink(missing_ok=True)
            continue
        try:
            move_into_place(temp, final)
        except FileNotFoundError:
            continue  # another process (a peer rank) recovered it first
        warnings.warn(
            f"Recovered checkpoint {str(final)!r}: a process that was killed had written it completely "
            "but not yet renamed it into place.",
            RuntimeWarning,
            stacklevel=2,
        )
        recovered.append(final)
    return recovered


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
