"""The ``Logger`` base class (Lightning's API) and the pieces every logger shares.

A logger receives flat ``{name: number}`` dicts from the Trainer (``log_metrics``), the
module's hyperparameters once at the start (``log_hyperparams``), and ``save()`` /
``finalize(status)`` calls. Everything that writes runs on global rank zero only; other ranks
get a ``DummyExperiment`` that swallows calls.

Beyond Lightning, a logger has ``state_dict()`` / ``load_state_dict()``: the resume checkpoint
stores the version (and how far logging got), so a restarted run keeps writing into the same
``version_N`` folder instead of starting ``version_N+1``.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fulmen.utilities.rank_zero import rank_zero_only

__all__ = ["Logger", "DummyLogger", "DummyExperiment", "VersionedFolderLogger", "rank_zero_experiment"]

T = TypeVar("T")


class DummyExperiment:
    """Stands in for a logger's experiment on non-zero ranks: every attribute is a no-op call."""

    def nop(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, _: str) -> Callable[..., None]:
        return self.nop

    def __getitem__(self, idx: int) -> DummyExperiment:
        # lets `self.logger.experiment[0].add_image(...)` be a no-op too
        return self

    def __setitem__(self, *args: Any) -> None:
        pass


def rank_zero_experiment(fn: Callable[..., T]) -> Callable[..., T | DummyExperiment]:
    """Decorate a logger's ``experiment`` getter: rank zero gets the real object, others a dummy."""

    @functools.wraps(fn)
    def experiment(self: Any) -> T | DummyExperiment:
        if rank_zero_only.rank > 0:
            return DummyExperiment()
        return fn(self)

    return experiment


class Logger(ABC):
    """Base class of experiment loggers, with Lightning 2.x's interface.

    Subclasses implement ``name``, ``version``, ``log_metrics`` and ``log_hyperparams``; the
    folder properties default to None for loggers that do not write files.
    """

    @property
    @abstractmethod
    def name(self) -> str | None:
        """The experiment name (the folder under ``save_dir`` for file loggers)."""

    @property
    @abstractmethod
    def version(self) -> int | str | None:
        """The experiment version: an int for ``version_N`` folders, or a user-chosen string."""

    @property
    def root_dir(self) -> str | None:
        """The folder that holds every version of this experiment, or None."""
        return None

    @property
    def log_dir(self) -> str | None:
        """The folder this run writes into, or None."""
        return None

    @property
    def save_dir(self) -> str | None:
        """The folder passed as ``save_dir``, or None."""
        return None

    @property
    def group_separator(self) -> str:
        """The separator used to group metrics in the UI (``"train/loss"``)."""
        return "/"

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record scalar metrics at ``step``."""

    @abstractmethod
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model's computational graph; a no-op unless the logger supports it."""

    def save(self) -> None:
        """Flush what was logged so far to its destination."""

    def finalize(self, status: str) -> None:
        """Called once at the end of fit/validate/test with ``"success"``, ``"failed"`` or ``"finished"``."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Called after ModelCheckpoint saved a file; loggers that upload checkpoints hook in here."""

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs: the name and the resolved version of this run."""
        return {"name": self.name, "version": self.version}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue the run described by ``state_dict``; file loggers reopen their version folder."""


class DummyLogger(Logger):
    """A logger that does nothing, for code paths that need a logger object but no output."""

    def __init__(self) -> None:
        self._experiment = DummyExperiment()

    @property
    def experiment(self) -> DummyExperiment:
        return self._experiment

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        pass

    def __getitem__(self, idx: int) -> DummyLogger:
        return self

    def __getattr__(self, name: str) -> Callable[..., None]:
        # Any logger-specific method (e.g. ``log_image``) becomes a no-op.
        if name.startswith("__"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> None:
            return None

        return method


class VersionedFolderLogger(Logger):
    """A file logger writing into ``save_dir/name/version_N``: the folder properties and the resume rule.

    CSVLogger and TensorBoardLogger share this layout (Lightning's); the version is chosen on
    first use (the next free ``version_N``) unless given, and a restore continues the saved
    version only where ``resumable_version`` allows it.

    Args:
        save_dir: root folder of all experiments.
        name: experiment folder under ``save_dir`` (``""`` or None: write straight into ``save_dir``).
        version: int -> ``version_<int>``; str -> that folder name; None -> next free ``version_N``.
    """

    LOGGER_JOIN_CHAR = "-"  # between ``prefix`` and a metric name, as in Lightning's file loggers

    def __init__(self, save_dir: str | os.PathLike[str], name: str | None, version: int | str | None) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._version_given = version is not None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        """The version; on first access without one, the next free ``version_N`` number."""
        if self._version is None:
            self._version = next_version(self.root_dir)
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        """``save_dir/name``: the folder holding every version of this experiment."""
        return os.path.join(self._save_dir, self._name)

    @property
    def log_dir(self) -> str:
        """``save_dir/name/version_N``."""
        return os.path.join(self.root_dir, version_folder_name(self.version))

    def state_dict(self) -> dict[str, Any]:
        """Where this run writes: ``save_dir``, ``name`` and the resolved ``version``."""
        return {"save_dir": self.save_dir, "name": self.name, "version": self.version}

    def _resumed_version(self, state_dict: Mapping[str, Any]) -> int | str | None:
        """The saved version this logger should continue, or None: ignored when the state belongs to
        another experiment or ``version`` was given explicitly (``resumable_version``)."""
        return resumable_version(
            state_dict, save_dir=self.save_dir, name=self.name, version_given=self._version_given
        )


def next_version(root_dir: str) -> int:
    """The next free ``version_N`` number in ``root_dir`` (0 when it is missing or has none)."""
    try:
        entries = os.listdir(root_dir)
    except OSError:
        return 0
    existing = []
    for entry in entries:
        if not entry.startswith("version_"):
            continue
        number = entry[len("version_") :]
        if number.isdigit() and os.path.isdir(os.path.join(root_dir, entry)):
            existing.append(int(number))
    return max(existing) + 1 if existing else 0


def resumable_version(
    state_dict: Mapping[str, Any], *, save_dir: str, name: str, version_given: bool
) -> int | str | None:
    """The version a file logger should continue after a restore, or None to keep its own.

    A saved version is adopted only when it describes this logger's experiment (same
    ``save_dir`` and ``name``) and the user did not pick a version explicitly: resuming a
    preempted run continues its folder, while a new logger pointed elsewhere, or given
    ``version=...``, is never redirected by an old checkpoint.
    """
    version = state_dict.get("version")
    if version is None or version_given or state_dict.get("name", name) != name:
        return None
    saved_dir = state_dict.get("save_dir")
    if saved_dir is not None and os.path.realpath(saved_dir) != os.path.realpath(save_dir):
        return None
    return version


def version_folder_name(version: int | str) -> str:
    """``version_N`` for an int version; a string version is used as the folder name as-is."""
    return version if isinstance(version, str) else f"version_{version}"
