"""Run things on global rank zero only (Lightning's ``rank_zero_*`` utilities).

``rank_zero_only`` decorates a function so that it runs on global rank zero and returns
``default`` (None) elsewhere. Its ``rank`` attribute is the process's global rank: the Trainer
sets it when it knows the rank (``rank_zero_only.rank = strategy.global_rank``); until then it
is read from the launcher's environment (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``,
``JSM_NAMESPACE_RANK``, in Lightning's order) *at call time*, so a value exported after import
is still seen.

Messages from ``rank_zero_info`` / ``rank_zero_debug`` go to the ``fulmen`` logger. Like
Lightning, fulmen shows INFO messages on stderr when the application has not configured
logging; unlike Lightning, it decides that on the first message rather than at import, so
importing fulmen never touches logging configuration.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

__all__ = [
    "rank_zero_only",
    "rank_zero_info",
    "rank_zero_debug",
    "rank_zero_warn",
    "rank_zero_deprecation",
    "rank_prefixed_message",
    "LightningDeprecationWarning",
    "WarningCache",
]

T = TypeVar("T")

# Lightning's order: RANK (torchrun, fulmen launcher) first; SLURM_PROCID can be set in an
# allocation that does not manage our processes, so it only counts when nothing else is set.
_RANK_ENV_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

log = logging.getLogger(__name__)


def rank_from_environment(environ: Mapping[str, str] | None = None) -> int | None:
    """The global rank announced by a launcher's environment variables, or None when none is set."""
    env = os.environ if environ is None else environ
    for key in _RANK_ENV_KEYS:
        value = env.get(key)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                # A malformed value must not crash logging; the cluster detection reports it.
                continue
    return None


class _RankZeroOnly:
    """The ``rank_zero_only`` decorator object; see the module docstring for ``rank``."""

    def __init__(self) -> None:
        self._rank: int | None = None

    @property
    def rank(self) -> int:
        """This process's global rank: set by the Trainer, else read from the environment, else 0."""
        if self._rank is not None:
            return self._rank
        return rank_from_environment() or 0

    @rank.setter
    def rank(self, value: int | None) -> None:
        # None goes back to reading the environment (used by tests and by teardown).
        self._rank = None if value is None else int(value)

    @overload
    def __call__(self, fn: Callable[..., T]) -> Callable[..., T | None]: ...

    @overload
    def __call__(self, fn: Callable[..., T], default: T) -> Callable[..., T]: ...

    def __call__(self, fn: Callable[..., T], default: Any = None) -> Callable[..., Any]:
        """Wrap ``fn`` so that it runs on global rank zero and returns ``default`` on other ranks."""

        @functools.wraps(fn)
        def wrapped_fn(*args: Any, **kwargs: Any) -> Any:
            if self.rank == 0:
                return fn(*args, **kwargs)
            return default

        return wrapped_fn

    def __repr__(self) -> str:
        return f"rank_zero_only(rank={self.rank})"


rank_zero_only = _RankZeroOnly()


def _ensure_console_logging() -> None:
    """Show fulmen's INFO messages on stderr unless the application configured logging itself.

    Runs on the first message instead of at import (Lightning does it at import), so that
    ``import fulmen`` has no side effects and a ``logging.basicConfig`` done later still wins.
    """
    package_logger = logging.getLogger("fulmen")
    if getattr(package_logger, "_fulmen_console_checked", False):
        return
    package_logger._fulmen_console_checked = True  # type: ignore[attr-defined]
    if package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.INFO)
    if not logging.getLogger().hasHandlers() and not package_logger.handlers:
        package_logger.addHandler(logging.StreamHandler())
        package_logger.propagate = False


def rank_prefixed_message(message: str, rank: int | None) -> str:
    """``"[rank: N] message"``, or the message unchanged when the rank is unknown."""
    if rank is not None:
        return f"[rank: {rank}] {message}"
    return message


@rank_zero_only
def rank_zero_info(*args: Any, stacklevel: int = 3, **kwargs: Any) -> None:
    """Log an INFO message on global rank zero only (shown on stderr by default)."""
    _ensure_console_logging()
    log.info(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_debug(*args: Any, stacklevel: int = 3, **kwargs: Any) -> None:
    """Log a DEBUG message on global rank zero only."""
    _ensure_console_logging()
    log.debug(*args, stacklevel=stacklevel, **kwargs)


@rank_zero_only
def rank_zero_warn(message: str | Warning, stacklevel: int = 4, **kwargs: Any) -> None:
    """``warnings.warn`` on global rank zero only; ``category`` and the rest pass through.

    The default ``stacklevel=4`` attributes the warning to the line that called
    ``rank_zero_warn`` (``_warn``, this function and the rank-zero wrapper sit in between).
    """
    _warn(message, stacklevel=stacklevel, **kwargs)


def _warn(message: str | Warning, stacklevel: int = 2, **kwargs: Any) -> None:
    warnings.warn(message, stacklevel=stacklevel, **kwargs)


class LightningDeprecationWarning(DeprecationWarning):
    """A deprecated Lightning API is used (kept under Lightning's name so filters keep working)."""


@rank_zero_only
def rank_zero_deprecation(message: str | Warning, stacklevel: int = 5, **kwargs: Any) -> None:
    """A ``LightningDeprecationWarning`` on global rank zero only."""
    kwargs.setdefault("category", LightningDeprecationWarning)
    _warn(message, stacklevel=stacklevel, **kwargs)


class WarningCache(set):
    """Warn or log each distinct message once per process (on rank zero)."""

    def warn(self, message: str, stacklevel: int = 5, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_warn(message, stacklevel=stacklevel, **kwargs)

    def deprecation(self, message: str, stacklevel: int = 6, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_deprecation(message, stacklevel=stacklevel, **kwargs)

    def info(self, message: str, stacklevel: int = 4, **kwargs: Any) -> None:
        if message not in self:
            self.add(message)
            rank_zero_info(message, stacklevel=stacklevel, **kwargs)
