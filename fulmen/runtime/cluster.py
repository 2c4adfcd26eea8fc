"""Which cluster environment started this process: the detection order, written once.

1. ``FULMEN_CLUSTER`` forces an environment by name: ``single`` | ``env`` | ``slurm``.
2. fulmen launcher / torchrun variables (``RANK``, ``WORLD_SIZE``, ...): :class:`TorchElasticEnvironment`.
3. A SLURM step task (a batch shell or an allocation entered without ``srun`` is *not* a
   multi-rank job): :class:`SLURMEnvironment`.
4. Otherwise a single process: :class:`SingleProcessEnvironment`.

Each environment owns its detection, its ``RankInfo`` and its topology checks
(``fulmen.runtime.environments``); this module only walks them. Nothing here reads
``os.environ`` unless the caller passes no mapping, so every branch is testable with a dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fulmen.errors import ClusterMismatchError
from fulmen.runtime.environments import ClusterEnvironment, SingleProcessEnvironment, SLURMEnvironment, TorchElasticEnvironment
from fulmen.runtime.environments.base import OVERRIDE_VARIABLE, RESTART_COUNT_VARIABLE, RUN_DIR_VARIABLE
from fulmen.runtime.environments.single import single_process_rank_info
from fulmen.runtime.environments.torchelastic import rank_info_from_env
from fulmen.runtime.ranks import RankInfo

__all__ = [
    "DETECTION_ORDER", "OVERRIDE_VARIABLE", "RESTART_COUNT_VARIABLE", "RUN_DIR_VARIABLE", "SOURCES",
    "detect", "detect_environment", "environment_for", "rank_info_from_env", "single_process_rank_info",
]

# The first environment whose detect() says yes is the one; the single process always says yes.
DETECTION_ORDER: tuple[type[ClusterEnvironment], ...] = (
    TorchElasticEnvironment,
    SLURMEnvironment,
    SingleProcessEnvironment,
)
_BY_NAME: dict[str, type[ClusterEnvironment]] = {
    cls.name: cls for cls in (SingleProcessEnvironment, TorchElasticEnvironment, SLURMEnvironment)
}
SOURCES = tuple(_BY_NAME)  # the names FULMEN_CLUSTER accepts, in the order its error lists them


def detect_environment(environ: Mapping[str, str] | None = None) -> ClusterEnvironment:
    """The environment that started this process, read from ``environ`` (default: ``os.environ``)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    forced = env.get(OVERRIDE_VARIABLE, "").strip().lower()
    if forced:
        return _forced_environment(forced, env)
    for cls in DETECTION_ORDER:
        if cls.detect(env):
            return cls(env)
    raise AssertionError("unreachable: SingleProcessEnvironment detects every process")


def detect(environ: Mapping[str, str] | None = None) -> RankInfo:
    """The ``RankInfo`` of this process, read from ``environ`` (default: ``os.environ``)."""
    return detect_environment(environ).rank_info()


def environment_for(rank_info: RankInfo, environ: Mapping[str, str] | None = None) -> ClusterEnvironment:
    """The environment a given ``RankInfo`` came from (by its ``source``), describing that rank.

    For code handed a ``RankInfo`` rather than an environment (a user-built strategy, the
    preemption hand-off); ``environ`` is still read for checks that need more than the ranks.
    """
    cls = _BY_NAME.get(rank_info.source)
    if cls is None:
        raise ClusterMismatchError(
            f"RankInfo(source={rank_info.source!r}) names no known environment. "
            f"Expected one of: {', '.join(SOURCES)}."
        )
    return cls(environ, rank_info=rank_info)


def _forced_environment(forced: str, env: Mapping[str, str]) -> ClusterEnvironment:
    cls = _BY_NAME.get(forced)
    if cls is None:
        raise ClusterMismatchError(
            f"{OVERRIDE_VARIABLE}={forced!r} is not a known source. Expected one of: {', '.join(SOURCES)}."
        )
    if not cls.detect(env):
        raise ClusterMismatchError(cls.not_detected_hint)
    return cls(env)
