"""How much disk a checkpoint save needs, and the error when it does not get it.

Kept apart from ``checkpoint`` (file mechanics) because it is arithmetic on the object being
saved and on the target disk: the writer reserves ``expected_file_size`` up front, and a save
that hits ENOSPC or a quota names the file, the size it needed and what was free.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch

from fulmen.errors import CheckpointError


def no_space_error(final: Path, needed: int, cause: OSError) -> CheckpointError:
    """The error for a save that ran out of disk space (or quota): which file, how much it needed
    and how much is free, instead of torch's ``[enforce fail at inline_container.cc] unexpected pos``."""
    try:
        free = f"{shutil.disk_usage(final.parent).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    what = "no space left on device" if cause.errno == errno.ENOSPC else "disk quota exceeded"
    return CheckpointError(
        f"Checkpoint not saved: {what} while writing {str(final)!r} (needed ~{needed / 2**20:.1f} MB, "
        f"{free} on {str(final.parent)!r}). Any earlier file with that name is unchanged.\n"
        "HINT: free space there, or save elsewhere (ModelCheckpoint(dirpath=...), Trainer(default_root_dir=...))."
    )


_RESERVE_FROM = 8 << 20  # below this, reserving disk space is not worth a system call
_SAVE_OVERHEAD = 1 << 20  # pickled structure and zip records around the tensor bytes


def expected_file_size(obj: Any) -> int:
    """About how many bytes ``torch.save(obj)`` writes (0 for small objects): the tensor
    storages it holds, each counted once, plus room for the rest."""
    total = tensor_bytes(obj)
    return total + _SAVE_OVERHEAD if total >= _RESERVE_FROM else 0


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensor storages ``obj`` holds, each counted once."""
    seen: set[tuple[int, str]] = set()
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            key = (storage.data_ptr(), str(storage.device))
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total
