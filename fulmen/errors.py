"""Exceptions that fulmen raises on purpose.

Every message says three things: what was seen, what was expected, and how to fix it
(a line starting with ``HINT:`` where a concrete setting or command helps).
``MisconfigurationException`` keeps Lightning's name so that user code catching it still works.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FulmenError(Exception):
    """Base class of every error fulmen raises deliberately."""


class MisconfigurationException(FulmenError, ValueError):
    """A flag, hook return value or setting that cannot work (Lightning's name for it)."""


class ClusterMismatchError(MisconfigurationException):
    """The launch environment (ranks, nodes, devices) disagrees with the Trainer's settings."""


class CheckpointError(FulmenError):
    """A checkpoint file that cannot be read, is truncated, or lacks required keys."""


class LaunchError(FulmenError):
    """A job that cannot be launched or submitted as described."""


class MissingExtraError(FulmenError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the pip extra.

    A ``ModuleNotFoundError`` (an ``ImportError``), as Lightning raises for its optional packages.
    """

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed.\n"
            f"HINT: pip install 'fulmen[{extra}]'"
        )


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' suffix for error messages, or '' when nothing is close."""
    matches = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


class SlurmCommandError(FulmenError):
    """A SLURM command (sbatch, scontrol, squeue, sacct, scancel) failed or is missing."""


class MonitorKeyError(FulmenError, RuntimeError):
    """A callback monitors a metric that was never logged (a RuntimeError, as in Lightning)."""


class UnknownFlagError(MisconfigurationException, TypeError):
    """A keyword that the Trainer does not know (a TypeError too, like Python's own message)."""


class _TunerExitException(Exception):
    """Raised by a tuner callback run from ``Tuner`` once its search is done: the Trainer ends
    that fit as finished, not failed (Lightning's ``_TunerExitException``)."""
