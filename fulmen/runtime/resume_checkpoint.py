"""The resume checkpoint of a run: where it lives, how it is saved, how the newest valid one is found.

The launchers restart a preempted or failed run in the same run directory; the Trainer then
resumes from ``<run_dir>/checkpoints/resume/resume-step=<global_step>.ckpt``, or from the
``ckpt_path`` of this run when that one is newer (``resume_selection.py``). Once the run has
completed the resume checkpoint is removed; a failed or preempted run keeps it. Next to the files a ``last`` pointer names the
newest one and is itself replaced atomically. ``find_resume_checkpoint`` trusts the pointer
first and falls back to the newest valid file, skipping broken ones with a warning, because a
kill can land between writing a file and moving the pointer.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fulmen.errors import CheckpointError
from fulmen.runtime.checkpoint import PathLike, check_checkpoint_file, save_atomic, write_text_atomic
from fulmen.runtime.checkpoint_recovery import recover_unfinished_saves, remove_stale_temp_files

RESUME_SUBDIR = ("checkpoints", "resume")
RESUME_PREFIX = "resume-step="
LAST_POINTER_NAME = "last"
_RESUME_NAME = re.compile(r"^resume-step=(\d+)\.ckpt$")


def resume_checkpoint_dir(run_dir: PathLike) -> Path:
    """Folder of the resume checkpoints of a run: ``<run_dir>/checkpoints/resume``."""
    return Path(run_dir).joinpath(*RESUME_SUBDIR)


def resume_checkpoint_name(global_step: int) -> str:
    """File name of the resume checkpoint taken at ``global_step`` (zero-padded: sorts by name)."""
    return f"{RESUME_PREFIX}{global_step:012d}.ckpt"


def write_last_pointer(directory: PathLike, target: PathLike) -> Path:
    """Point ``<directory>/last`` at ``target`` (a file in that folder), atomically."""
    return write_text_atomic(Path(target).name + "\n", Path(directory) / LAST_POINTER_NAME)


def read_last_pointer(directory: PathLike) -> Path | None:
    """The file ``<directory>/last`` names, or None when there is no usable pointer."""
    pointer = Path(directory) / LAST_POINTER_NAME
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not name or "/" in name or name.startswith("."):
        return None
    return Path(directory) / name


def resume_checkpoint_step(path: PathLike) -> int | None:
    """The global step in a resume checkpoint's file name, or None for another name."""
    match = _RESUME_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_resume_checkpoints(directory: PathLike) -> list[Path]:
    """Resume checkpoint files in ``directory``, newest (highest global step) first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _RESUME_NAME.match(p.name))]
    return [path for _, path in sorted(found, reverse=True)]


def find_resume_checkpoint(run_dir: PathLike) -> Path | None:
    """The newest valid resume checkpoint of ``run_dir``, or None when there is none.

    Files are tried from the highest global step down (a kill between writing a file and
    moving the ``last`` pointer leaves a complete file newer than the pointer); a pointer to a
    file with another name goes first. A file that is truncated or corrupted (CRC32 checked)
    is skipped with a warning naming it. A complete file a killed process had not yet renamed
    into place is recovered first (``recover_unfinished_saves``).
    """
    directory = resume_checkpoint_dir(run_dir)
    recover_unfinished_saves(directory)
    candidates = list_resume_checkpoints(directory)
    pointed = read_last_pointer(directory)
    if pointed is not None and pointed.exists() and pointed not in candidates:
        candidates.insert(0, pointed)
    for candidate in candidates:
        try:
            check_checkpoint_file(candidate, verify_checksums=True)
        except CheckpointError as err:
            warnings.warn(f"Skipping a broken resume checkpoint: {err}", RuntimeWarning, stacklevel=2)
            continue
        return candidate
    return None


def save_resume_checkpoint(checkpoint: Mapping[str, Any], run_dir: PathLike, *, keep: int = 2) -> Path:
    """Write the resume checkpoint of a run, point ``last`` at it, then prune older ones.

    ``keep`` (>= 1) files remain so that a later-corrupted newest file still has a fallback.
    Deletion happens only after the new file and the pointer are in place.
    """
    if keep < 1:
        raise ValueError(f"save_resume_checkpoint(keep={keep}): expected keep >= 1")
    global_step = int(checkpoint.get("global_step", 0))
    directory = resume_checkpoint_dir(run_dir)
    path = save_atomic(checkpoint, directory / resume_checkpoint_name(global_step))
    write_last_pointer(directory, path)
    for older in list_resume_checkpoints(directory)[keep:]:
        if older != path:  # never the file just written, even if an older run went further
            older.unlink(missing_ok=True)
    remove_stale_temp_files(directory)
    return path


def remove_resume_checkpoints(run_dir: PathLike) -> list[Path]:
    """Delete the resume checkpoints of a run that has completed (issue #14: none stays behind).

    Removes the files, the ``last`` pointer and leftover temp files, then the ``resume`` folder
    and ``checkpoints/`` above it when they are empty (ModelCheckpoint files with
    ``logger=False`` live there and stay). Call it only once every checkpoint the run saved is
    durable: until then the resume checkpoint may be the newest progress there is.
    Returns the checkpoint files removed.
    """
    directory = resume_checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    removed = list_resume_checkpoints(directory)
    for path in removed:
        path.unlink(missing_ok=True)
    (directory / LAST_POINTER_NAME).unlink(missing_ok=True)
    remove_stale_temp_files(directory)
    for folder in (directory, directory.parent):
        try:
            folder.rmdir()
        except OSError:  # not empty (a temp file of a live writer, ModelCheckpoint files): keep it
            break
    return removed
