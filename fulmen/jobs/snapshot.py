"""Copy the code a job runs into its run directory, so later edits do not leak into it.

A queued or requeued job starts minutes or days after submission; by then the user has
usually edited the script. The rank entry runs the copy in ``<run_dir>/code/``, never the
working tree.

What is copied: the *source root* (the current directory when the entry script lies under
it, else the script's folder), source and config files only (:data:`SOURCE_SUFFIXES`), skipping
hidden folders, virtual environments, caches and the run root itself. Limits keep a stray
data folder from being copied; exceeding them is an error with a HINT rather than a silent
half-copy.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fulmen.errors import LaunchError

CODE_DIR = "code"
SOURCE_SUFFIXES = frozenset({".py", ".pyi", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".txt", ".sh"})
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "venv", "env", "build", "dist", "site-packages"})
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_FILES = 5_000


@dataclass(frozen=True)
class Snapshot:
    """Where the copy lives and how to run the entry from it."""

    source_root: Path  # what was copied
    code_dir: Path  # <run_dir>/code
    entry: str  # the script path relative to code_dir (or the module name)
    files: int
    bytes: int


def source_root_for(entry: Path, cwd: Path) -> Path:
    """The folder to snapshot: ``cwd`` if it contains the script, else the script's folder."""
    entry = entry.resolve()
    cwd = cwd.resolve()
    return cwd if entry.is_relative_to(cwd) else entry.parent


def snapshot_code(
    entry: str, run_dir: Path, *, entry_is_module: bool = False, cwd: Path | None = None
) -> Snapshot:
    """Copy the source root of ``entry`` into ``<run_dir>/code`` and return where things are.

    The run directory is excluded even when it lies under the source root. Calling it again
    for the same run (a resubmission) replaces the previous copy.
    """
    cwd = (cwd or Path.cwd()).resolve()
    run_dir = run_dir.resolve()
    if entry_is_module:
        root = cwd
        relative_entry = entry
    else:
        script = Path(entry) if Path(entry).is_absolute() else cwd / entry
        root = source_root_for(script, cwd)
        relative_entry = str(script.resolve().relative_to(root))
    code_dir = run_dir / CODE_DIR
    if code_dir.exists():
        shutil.rmtree(code_dir)
    files, total = _copy_tree(root, code_dir, exclude={run_dir, run_dir.parent})
    if not entry_is_module and not (code_dir / relative_entry).is_file():
        # The script itself may have a suffix outside SOURCE_SUFFIXES (or none): copy it anyway.
        (code_dir / relative_entry).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative_entry, code_dir / relative_entry)
        files += 1
    return Snapshot(root, code_dir, relative_entry, files, total)


def _copy_tree(root: Path, dest: Path, exclude: set[Path]) -> tuple[int, int]:
    files = total = 0
    dest.mkdir(parents=True, exist_ok=True)
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(here / d, exclude))
        for name in sorted(filenames):
            source = here / name
            if source.suffix not in SOURCE_SUFFIXES or name.startswith("."):
                continue
            size = source.stat().st_size
            if size > MAX_FILE_BYTES:
                continue  # large .json/.txt files are data, not code
            files += 1
            total += size
            if files > MAX_FILES or total > MAX_TOTAL_BYTES:
                raise LaunchError(
                    f"The code snapshot of {root} grew past {MAX_FILES} files or "
                    f"{MAX_TOTAL_BYTES // 2**20} MiB; it looks like a data folder is inside it.\n"
                    "HINT: run `launch` from your project folder (the one holding the script and its "
                    "modules), and keep data sets outside it."
                )
            target = dest / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return files, total


def _skip_dir(path: Path, exclude: set[Path]) -> bool:
    name = path.name
    if name.startswith(".") or name in SKIP_DIRS or name.endswith(".egg-info"):
        return True
    if (path / "pyvenv.cfg").exists():  # a virtual environment under any name
        return True
    if (path / "spec.json").is_file() and (path / CODE_DIR).is_dir():  # another run's folder
        return True
    return path.resolve() in exclude
