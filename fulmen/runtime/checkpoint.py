"""Checkpoint files on disk: atomic save, checked load, and recovery of unfinished saves.

This module knows files, not trainers (``checkpoint_state`` turns a trainer into the dict;
``resume_checkpoint`` names and finds the resume checkpoints of a run).

Why each piece is here:

- ``save_atomic`` writes to a temporary file in the destination folder, fsyncs it, renames
  it over the final name and fsyncs the folder. A process killed at any moment leaves either
  the previous file or the new one under the final name, never a truncated one.
- ``load_checkpoint`` uses ``torch.load(weights_only=True)`` so that a file from an untrusted
  source cannot run code. Checkpoints holding arbitrary Python objects (custom classes, or an
  ``argparse.Namespace`` pickled by Lightning; fulmen stores those as plain data, see
  ``checkpoint_hparams``) need ``unsafe_full_unpickle=True``, which runs the
  full pickle machinery: only for files you trust.
- Torch checkpoints are zip archives whose records carry CRC32 checksums that ``torch.load``
  does not verify. ``load_checkpoint`` checks every record in the same pass that reads it
  (``checkpoint_crc_load``: each storage copied out of an mmap and CRC'd on a thread pool; the
  two-pass ``checkpoint_crc.RecordCheck`` beside ``torch.load`` where that cannot be used), so a
  bit flip is an error naming the file and the record, never a silently different model. ``check_checkpoint_file(...,
  verify_checksums=True)`` checks a file without loading it (the resume search, recovery).
- A save has two halves, ``write_temp`` (serialise) and ``move_into_place`` (fsync, rename,
  fsync the folder); ``checkpoint_saver`` runs the second in the background during training,
  and ``recover_unfinished_saves`` finishes what a killed process left between them.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import pickle
import re
import socket
import struct
import sys
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fulmen.errors import CheckpointError
from fulmen.runtime.bulk_writer import BulkFileWriter
from fulmen.runtime.checkpoint_crc import RecordCheck, start_record_check
from fulmen.runtime.checkpoint_crc_load import CheckedLoad
from fulmen.runtime.checkpoint_space import expected_file_size, no_space_error, tensor_bytes

PathLike = str | os.PathLike[str]

TEMP_MARK = ".fulmen-tmp-"
TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.fulmen-tmp-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}$")
_ZIP_LOCAL_MAGIC = b"PK\x03\x04"
_ZIP_END_MAGIC = b"PK\x05\x06"
_ZIP64_END_MAGIC = b"PK\x06\x06"
# pickle protocol 2+ starts with PROTO (0x80); torch's legacy (pre-1.6) format is such a pickle
_LEGACY_PICKLE_MAGIC = b"\x80"


@functools.lru_cache(maxsize=1)
def host_tag() -> str:
    """8 hex digits naming this machine: a pid in a temp file name means something only here."""
    return hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()


def _temp_path_for(path: Path) -> Path:
    # same folder as the target, so os.replace is a rename on one filesystem (atomic); the
    # name says which file it becomes and which process (pid, machine) writes it
    return path.parent / f".{path.name}{TEMP_MARK}{os.getpid()}-{host_tag()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(directory: Path) -> None:
    """Persist a rename: on POSIX the directory entry itself must be flushed."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_temp(obj: Any, final: Path) -> tuple[Path, int]:
    """Serialise ``obj`` with ``torch.save`` into a new temp file next to ``final``.

    Returns the temp path and its still-open descriptor (for ``move_into_place`` to fsync);
    nothing is flushed to disk yet. On any error the temp file is removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path_for(final)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    writer = None
    try:
        with open(fd, "wb", buffering=0, closefd=False) as handle:
            writer = BulkFileWriter(handle, expected_size=expected_file_size(obj))
            torch.save(obj, writer)
            writer.finish()
    except BaseException as err:
        discard_temp(temp, fd)
        cause = writer.error if writer is not None and writer.error is not None else err
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space_error(final, tensor_bytes(obj) + (64 << 10), cause) from err
        raise
    return temp, fd


def move_into_place(temp: Path, final: Path, *, fd: int | None = None) -> None:
    """Fsync ``temp``, rename it over ``final`` and fsync the folder (the durable half of a save).

    ``fd`` is the descriptor ``write_temp`` returned (closed here); without it the file is
    opened again (recovering a temp file a killed process left). On any error the temp file
    is removed and ``final`` is untouched.
    """
    try:
        if fd is None:
            fd = os.open(temp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(temp, final)
    except BaseException:
        discard_temp(temp, fd)
        raise
    _fsync_dir(final.parent)


def discard_temp(temp: Path, fd: int | None = None) -> None:
    """Close ``fd`` (if open) and delete ``temp``; errors are ignored (it is clean-up)."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    temp.unlink(missing_ok=True)


def save_atomic(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to ``path`` so that ``path`` is never seen half-written.

    The data goes to a temporary file in the same folder (its writeback starts while it is
    being written), is fsynced once, renamed over ``path`` with ``os.replace``, and the folder
    is fsynced so that the rename survives a power loss. On any error the temporary file is
    removed and ``path`` is untouched. ``checkpoint_saver.save_in_background`` does the same
    with the fsync and rename off the caller's thread.
    """
    final = Path(path)
    temp, fd = write_temp(obj, final)
    move_into_place(temp, final, fd=fd)
    return final


def write_text_atomic(text: str, path: PathLike) -> Path:
    """Replace a small text file atomically (used for the ``last`` pointer)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path_for(final)
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    return final


def check_checkpoint_file(path: PathLike, *, verify_checksums: bool = False) -> None:
    """Raise ``CheckpointError`` if ``path`` is missing, empty, truncated or corrupted.

    Without ``verify_checksums`` only the zip directory is read (cheap: a few KiB); with it
    every record's CRC32 is checked, which reads the whole file.
    """
    file = Path(path)
    if not file.exists():
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} does not exist.\n"
            "HINT: check the path; ModelCheckpoint(...).best_model_path and "
            "trainer.checkpoint_callback.last_model_path name the files that were written."
        )
    if file.is_dir():
        raise CheckpointError(
            f"Checkpoint path {str(file)!r} is a directory, expected a file written by "
            "trainer.save_checkpoint or torch.save.\nHINT: pass the path of a .ckpt file inside it."
        )
    size = file.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is empty (0 bytes): its write was interrupted.\n"
            "HINT: use an earlier checkpoint; files written by fulmen are renamed into place only "
            "when complete, so this one was written by something else or copied partially."
        )
    with open(file, "rb") as handle:
        head = handle.read(4)
        if head[:1] == _LEGACY_PICKLE_MAGIC:
            return  # torch's legacy non-zip format: no structure to check before unpickling
        if head != _ZIP_LOCAL_MAGIC:
            raise CheckpointError(
                f"Checkpoint file {str(file)!r} is not a torch checkpoint: it starts with {head!r}, "
                f"expected a zip archive ({_ZIP_LOCAL_MAGIC!r}) as written by torch.save."
            )
        handle.seek(max(0, size - 65_557))  # EOCD (22 bytes) + longest zip comment (65535)
        tail = handle.read()
    if _ZIP_END_MAGIC not in tail and _ZIP64_END_MAGIC not in tail:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is truncated ({size} bytes): the zip end record is "
            "missing, so the write stopped before the end.\nHINT: use an earlier checkpoint."
        )
    try:
        with zipfile.ZipFile(file) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise CheckpointError(
                    f"Checkpoint file {str(file)!r} is a zip archive without a 'data.pkl' record: "
                    "it was not written by torch.save."
                )
            if verify_checksums:
                bad = archive.testzip()
                if bad is not None:
                    raise CheckpointError(
                        f"Checkpoint file {str(file)!r} is corrupted: record {bad!r} fails its CRC32 "
                        "check (the bytes changed after saving).\nHINT: use an earlier checkpoint."
                    )
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is corrupted or truncated ({size} bytes): {err}.\n"
            "HINT: use an earlier checkpoint."
        ) from err


def load_checkpoint(
    path: PathLike,
    map_location: Any = None,
    *,
    unsafe_full_unpickle: bool = False,
    verify_checksums: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(weights_only=True)``; errors name the file.

    ``unsafe_full_unpickle=True`` switches to the full unpickler, which can execute code
    embedded in the file: use it only for checkpoints you (or someone you trust) wrote, when
    they hold Python objects beyond tensors and plain containers.

    Every record's CRC32 is checked as ``torch.load`` reads it (``checkpoint_crc_load``); a mismatch
    raises ``CheckpointError`` naming the file and the record. ``verify_checksums=True`` also
    checks them all before loading starts (kept for callers that want the file judged first).
    """
    file = Path(path)
    _see_own_saves(file)
    check_checkpoint_file(file, verify_checksums=verify_checksums)
    fused = _fused_load(file)
    if fused is not None:
        try:
            checkpoint = fused.load(map_location, weights_only=not unsafe_full_unpickle)
        except Exception as err:
            # a damaged record can look like anything to the unpickler (and a file system
            # may refuse mmap): the full check names damage first, then the plain load explains
            _raise_if_corrupt(file, _start_record_check(file), cause=err)
            checkpoint = _load_diagnosed(file, map_location, unsafe_full_unpickle)
        else:
            _raise_if_corrupt(file, fused)
    else:
        record_check = _start_record_check(file)
        try:
            checkpoint = torch.load(str(file), map_location=map_location, weights_only=not unsafe_full_unpickle)
        except Exception as err:
            _raise_if_corrupt(file, record_check, cause=err)  # as above
            checkpoint = _load_diagnosed(file, map_location, unsafe_full_unpickle)
        _raise_if_corrupt(file, record_check)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} holds a {type(checkpoint).__name__}, expected a dict "
            "(as written by trainer.save_checkpoint).\nHINT: a bare state_dict saved with "
            "torch.save(model.state_dict()) loads with model.load_state_dict(torch.load(path))."
        )
    return checkpoint


def _fused_load(file: Path) -> CheckedLoad | None:
    """The one-pass checked load of ``file`` (``checkpoint_crc_load``), or None: legacy format,
    or a zip the two-pass check handles (compressed records, another byte order)."""
    with open(file, "rb") as handle:
        if handle.read(4) != _ZIP_LOCAL_MAGIC:
            return None
    try:
        return CheckedLoad.usable(file)
    except (zipfile.BadZipFile, OSError, EOFError, struct.error) as err:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is corrupted: its zip records cannot be read ({err}).\n"
            "HINT: use an earlier checkpoint."
        ) from err


def _start_record_check(file: Path) -> RecordCheck | None:
    """Start the CRC32 check of ``file``'s records (None for torch's legacy non-zip format)."""
    with open(file, "rb") as handle:
        if handle.read(4) != _ZIP_LOCAL_MAGIC:
            return None
    try:
        return start_record_check(file)
    except (zipfile.BadZipFile, OSError, EOFError, struct.error) as err:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is corrupted: its zip records cannot be read ({err}).\n"
            "HINT: use an earlier checkpoint."
        ) from err


def _raise_if_corrupt(
    file: Path, record_check: RecordCheck | CheckedLoad | None, cause: BaseException | None = None
) -> None:
    """Wait for ``record_check``; raise ``CheckpointError`` naming the file and the damaged record."""
    bad = record_check.corrupt_record() if record_check is not None else None
    if bad is not None:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is corrupted: record {bad!r} fails its CRC32 check (the bytes "
            "changed after saving: a disk, memory or copy error).\nHINT: use an earlier checkpoint; "
            "fulmen checks every record on load, so a file that loads was not altered."
        ) from cause


def _see_own_saves(file: Path) -> None:
    """Make ``file`` readable if this or a killed process saved it in the background.

    Waits for this process's pending background saves (their failures are raised by the
    next save, not here), then finishes a save a killed process left unrenamed.
    """
    # only a process that imported the saver can have background saves (and it imports us)
    saver = sys.modules.get("fulmen.runtime.checkpoint_saver")
    if saver is not None:
        saver.wait_for_pending_saves(raise_errors=False)
    if not file.exists():
        # imported here: recovery builds on this module (check, move into place)
        from fulmen.runtime.checkpoint_recovery import recover_unfinished_saves

        recover_unfinished_saves(file.parent)


def _load_diagnosed(file: Path, map_location: Any, unsafe_full_unpickle: bool) -> Any:
    """Load again after a failure whose cause the checksums did not show, and explain it."""
    try:
        return torch.load(str(file), map_location=map_location, weights_only=not unsafe_full_unpickle)
    except pickle.UnpicklingError as err:
        if unsafe_full_unpickle or "weights only" not in str(err).lower():
            raise CheckpointError(f"Checkpoint file {str(file)!r} cannot be unpickled: {err}") from err
        blocked = _blocked_global(str(err))
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} holds Python objects beyond tensors and plain "
            f"containers{f' ({blocked})' if blocked else ''}, which the safe loader "
            "(torch.load(weights_only=True)) refuses because unpickling them can run code.\n"
            "HINT: if you trust the file, pass unsafe_full_unpickle=True (for example "
            "Model.load_from_checkpoint(path, unsafe_full_unpickle=True) or "
            "trainer.fit(model, ckpt_path=..., unsafe_full_unpickle=True)), or allow just the "
            f"classes it needs, which also covers trainer.fit(ckpt_path=...): "
            f"torch.serialization.add_safe_globals([{blocked or '<the class>'}])."
        ) from err
    except (RuntimeError, EOFError, ValueError, UnicodeDecodeError, KeyError, AttributeError) as err:
        raise CheckpointError(
            f"Checkpoint file {str(file)!r} is corrupted and cannot be read: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}\nHINT: use an earlier checkpoint."
        ) from err


def _blocked_global(message: str) -> str:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return match.group(1) if match else ""


def require_keys(checkpoint: Mapping[str, Any], keys: tuple[str, ...], path: PathLike, purpose: str) -> None:
    """Raise ``CheckpointError`` when ``checkpoint`` lacks one of ``keys`` needed for ``purpose``."""
    missing = [key for key in keys if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"Checkpoint file {str(path)!r} lacks {missing} needed to {purpose}; it has "
            f"{sorted(checkpoint)}.\nHINT: a checkpoint saved with save_weights_only=True holds "
            "only the weights: load it with load_from_checkpoint instead of resuming from it."
        )
