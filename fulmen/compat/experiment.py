"""test_tube's ``Experiment`` without test_tube: the same constructor, methods and files.

``Experiment(save_dir, name, version)`` owns ``save_dir/name/version_N/``:

- ``meta.experiment``: JSON (name, version, description, created_at, exp_hash, paths; plus
  ``git_commit`` / ``git_tag`` with ``create_git_tag=True``),
- ``meta_tags.csv``: ``key,value`` rows of the tags (``tag(...)``, ``argparse(...)``),
- ``metrics.csv``: one row per ``log(...)`` call, columns in order of first appearance plus
  ``created_at``, empty cells for metrics a row lacks (what pandas writes for test_tube),
- ``tf/``: the tfevents files: the experiment *is* a ``SummaryWriter`` (``add_image``, ...),
- ``media/``: created empty, as test_tube does.

Passing the version of an existing folder continues that experiment: its tags and metrics are
read back and new rows are appended. Without pandas and imageio (test_tube's ``png_`` metrics
that it saves as images are not supported). ``save_dir=None`` means ``./test_tube_data``.
"""

from __future__ import annotations

import csv
import json
import os
from argparse import Namespace
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from fulmen.utilities.git import code_commit, create_annotated_tag
from fulmen.utilities.rank_zero import rank_zero_only

__all__ = ["Experiment"]


class _NullFileWriter:
    """What a ``debug=True`` experiment writes tfevents into: nothing (test_tube writes no files then)."""

    def add_summary(self, *args: Any, **kwargs: Any) -> None:
        pass

    add_event = add_graph = add_onnx_graph = add_summary

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_logdir(self) -> str:
        return ""


class Experiment(SummaryWriter):
    """A versioned experiment folder that records tags and metrics and is a ``SummaryWriter``.

    Args:
        save_dir: root folder (``./test_tube_data`` when None).
        name: experiment folder under ``save_dir``.
        debug: write nothing at all (tags, metrics and events are dropped).
        rank: only rank 0 writes; default: the launcher's global rank (``RANK``, ``SLURM_PROCID``, ...).
        version: continue ``version_<version>`` (read back if it exists); None: the next free number.
        autosave: write the CSV/JSON files after every ``tag``/``log`` instead of on ``save()``.
        description: stored in ``meta.experiment`` and the git tag's message.
        create_git_tag: tag the code's ``HEAD`` as ``tt_<name>_v<version>`` and record the commit;
            outside a git repository this is a ``MisconfigurationException``.
        **kwargs: passed to ``SummaryWriter`` (``flush_secs``, ``max_queue``, ...).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str] | None = None,
        name: str = "default",
        debug: bool = False,
        version: int | None = None,
        autosave: bool = False,
        description: str | None = None,
        create_git_tag: bool = False,
        rank: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.no_save_dir = save_dir is None
        self.save_dir = os.fspath(save_dir) if save_dir is not None else os.path.join(os.getcwd(), "test_tube_data")
        # every rank of a launched job builds the experiment; only global rank 0 writes (test_tube's ``rank``)
        self.rank = rank if rank is not None else rank_zero_only.rank
        self.name, self.debug, self.autosave = name, debug, autosave
        self.description, self.create_git_tag = description, create_git_tag
        self.tags: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.tag_markdown_saved = False
        self.created_at = str(datetime.now(timezone.utc).replace(tzinfo=None))
        self.version = version if version is not None else self._next_version()
        self.exp_hash = f"{self.name}_v{self.version}"
        # asked before any folder exists, so a refusal leaves nothing behind
        self.git_commit: str | None = code_commit() if create_git_tag and not debug else None
        if not debug and self.rank == 0:
            self._open_folder()
        super().__init__(log_dir=self.get_tensorboardx_path(self.name, self.version), **kwargs)
        if self.git_commit is not None and self.rank == 0:
            self._tag_code()

    # -- folders (test_tube's names) -------------------------------------------------------

    def get_data_path(self, exp_name: str, exp_version: int) -> str:
        """``save_dir/<exp_name>/version_<exp_version>``: the experiment's folder."""
        return os.path.join(self.save_dir, exp_name, f"version_{exp_version}")

    def get_media_path(self, exp_name: str, exp_version: int) -> str:
        return os.path.join(self.get_data_path(exp_name, exp_version), "media")

    def get_tensorboardx_path(self, exp_name: str, exp_version: int) -> str:
        return os.path.join(self.get_data_path(exp_name, exp_version), "tf")

    def get_logdir(self) -> str:
        """The tfevents folder (``.../version_N/tf``), as ``SummaryWriter.get_logdir``."""
        return self.get_tensorboardx_path(self.name, self.version)

    @property
    def data_path(self) -> str:
        return self.get_data_path(self.name, self.version)

    def _next_version(self) -> int:
        root = os.path.join(self.save_dir, self.name)
        versions = [-1]
        if os.path.isdir(root):
            for entry in os.listdir(root):
                suffix = entry[len("version_") :]
                if entry.startswith("version_") and suffix.isdigit():
                    versions.append(int(suffix))
        return max(versions) + 1

    def _open_folder(self) -> None:
        """Create the folders, or read back the experiment that lives there."""
        meta = os.path.join(self.data_path, "meta.experiment")
        if os.path.exists(meta) and os.path.getsize(meta) > 0:
            self._load()
        os.makedirs(self.get_media_path(self.name, self.version), exist_ok=True)
        os.makedirs(self.get_tensorboardx_path(self.name, self.version), exist_ok=True)
        if not os.path.exists(meta):
            open(meta, "w").close()

    def _load(self) -> None:
        with open(os.path.join(self.data_path, "meta.experiment")) as file:
            data = json.load(file)
        self.created_at = data.get("created_at", self.created_at)
        self.git_commit = self.git_commit or data.get("git_commit")
        if self.description is None:
            self.description = data.get("description")
        self.tags = {row["key"]: _parsed(row["value"]) for row in _read_rows(self._tags_path)}
        self.metrics = [
            {key: _parsed(value) for key, value in row.items() if value != ""} for row in _read_rows(self._metrics_path)
        ]

    def _tag_code(self) -> None:
        """Record ``HEAD``'s commit and tag it ``tt_<exp_hash>`` (test_tube's tag name and message)."""
        assert self.git_commit is not None
        tag = f"tt_{self.exp_hash}"
        description = self.description if self.description is not None else "no description"
        message = f"Test tube exp: {self.name} - {description}"
        if create_annotated_tag(tag, message):
            print("Test tube created git tag:", tag)
        self.tags["git_commit"] = self.git_commit
        self.save()

    # -- what the seeds call ---------------------------------------------------------------

    def tag(self, tag_dict: Mapping[str, Any]) -> None:
        """Add metadata (hyperparameters) to the experiment; written to ``meta_tags.csv``."""
        if self.debug or self.rank > 0:
            return
        self.tags.update(tag_dict)
        if self.autosave:
            self.save()

    def argparse(self, argparser: Namespace | Any) -> None:
        """Tag every non-callable attribute of an argparse ``Namespace`` (the seeds' hparams)."""
        self.tag({key: value for key, value in vars(argparser).items() if not callable(value)})

    def log(
        self, metrics_dict: Mapping[str, Any], global_step: int | None = None, walltime: float | None = None
    ) -> None:
        """Write scalars to tfevents at ``global_step`` (default: the row count) and add a CSV row."""
        if self.debug or self.rank > 0:
            return
        step = len(self.metrics) if global_step is None else global_step
        row: dict[str, Any] = {}
        for key, value in metrics_dict.items():
            if isinstance(value, Mapping):
                self.add_scalars(key, dict(value), step, walltime)
                row.update({k: _plain(v) for k, v in value.items()})
            else:
                self.add_scalar(key, _plain(value), step, walltime)
                row[key] = _plain(value)
        row.setdefault("created_at", str(datetime.now(timezone.utc).replace(tzinfo=None)))
        self.metrics.append(row)
        if self.autosave:
            self.save()

    def save(self) -> None:
        """Write ``meta.experiment``, ``meta_tags.csv`` and ``metrics.csv`` (each atomically) and flush events."""
        if self.debug or self.rank > 0:
            return
        meta = {
            "name": self.name, "version": self.version, "tags_path": self._tags_path,
            "metrics_path": self._metrics_path, "autosave": self.autosave, "description": self.description,
            "created_at": self.created_at, "exp_hash": self.exp_hash,
        }  # fmt: skip
        if self.git_commit is not None:
            meta.update(git_commit=self.git_commit, git_tag=f"tt_{self.exp_hash}")
        _write_atomic(os.path.join(self.data_path, "meta.experiment"), lambda f: json.dump(meta, f, ensure_ascii=False))
        tag_rows = [{"key": key, "value": value} for key, value in self.tags.items()]
        _write_atomic(self._tags_path, lambda f: _write_rows(f, ["key", "value"], tag_rows))
        columns = list(dict.fromkeys(key for row in self.metrics for key in row))
        _write_atomic(self._metrics_path, lambda f: _write_rows(f, columns, self.metrics))
        if getattr(self, "file_writer", None) is not None:
            self.flush()
        if not self.tag_markdown_saved and self.tags:
            self.tag_markdown_saved = True
            self.add_text("hparams", self._hparams_markdown())

    def _get_file_writer(self) -> Any:
        if self.debug or self.rank > 0:
            return _NullFileWriter()
        return super()._get_file_writer()

    @property
    def _tags_path(self) -> str:
        return os.path.join(self.data_path, "meta_tags.csv")

    @property
    def _metrics_path(self) -> str:
        return os.path.join(self.data_path, "metrics.csv")

    def _hparams_markdown(self) -> str:
        lines = [f"###### {self.name}, version {self.version}\n---\n"]
        if self.description is not None:
            lines.append(f"#####*{self.description}*\n")
        lines.append("##### Hyperparameters\nparameter|value\n-|-\n")
        lines.extend(f"{key}|{value}\n" for key, value in self.tags.items())
        return "".join(lines)

    def __str__(self) -> str:
        return f"Exp: {self.name}, v: {self.version}"


def _plain(value: Any) -> Any:
    """A tensor or numpy scalar as a Python number (what the CSV and ``add_scalar`` want)."""
    return value.item() if hasattr(value, "item") else value


def _parsed(text: str) -> Any:
    """A CSV cell back as int/float/bool where it reads as one (pandas' ``read_csv`` does the same)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _read_rows(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _write_rows(file: Any, columns: list[str], rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(file, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _write_atomic(path: str, write: Any) -> None:
    """Write through ``write(file)`` into ``path.tmp`` and rename it over ``path`` (as test_tube does)."""
    temp = f"{path}.tmp"
    with open(temp, "w", newline="") as file:
        write(file)
    os.replace(temp, path)
