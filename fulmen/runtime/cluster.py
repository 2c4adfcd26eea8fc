"""Where does this process sit in a job? Pure functions of an environment mapping.

Detection order, written once and in one place:

1. ``FULMEN_CLUSTER`` forces a source: ``single`` | ``env`` | ``slurm``.
2. fulmen launcher / torchrun variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...).
3. A SLURM step task (delegated to ``fulmen.slurm.environment.rank_info_from_slurm``; a batch
   shell or an allocation entered without ``srun`` is *not* a multi-rank job).
4. Otherwise a single process.

Nothing here reads ``os.environ`` unless the caller passes no mapping, so every branch is
testable with a plain dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fulmen.errors import ClusterMismatchError
from fulmen.jobs.rundir import RESTART_COUNT_VARIABLE, RUN_DIR_VARIABLE
from fulmen.runtime.ranks import RankInfo

OVERRIDE_VARIABLE = "FULMEN_CLUSTER"
SOURCES = ("single", "env", "slurm")


def detect(environ: Mapping[str, str] | None = None) -> RankInfo:
    """The ``RankInfo`` of this process, read from ``environ`` (default: ``os.environ``)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    forced = env.get(OVERRIDE_VARIABLE, "").strip().lower()
    if forced:
        return _detect_forced(forced, env)
    info = rank_info_from_env(env)
    if info is not None:
        return info
    info = _rank_info_from_slurm(env, required=False)
    if info is not None:
        return info
    return single_process_rank_info(env)


def _detect_forced(forced: str, env: Mapping[str, str]) -> RankInfo:
    if forced == "single":
        return single_process_rank_info(env)
    if forced == "env":
        info = rank_info_from_env(env)
        if info is None:
            raise ClusterMismatchError(
                f"{OVERRIDE_VARIABLE}=env, but RANK and WORLD_SIZE are not set.\n"
                "HINT: start the script with `launch --nproc-per-node N script.py` or torchrun, "
                f"or unset {OVERRIDE_VARIABLE}."
            )
        return info
    if forced == "slurm":
        info = _rank_info_from_slurm(env, required=True)
        if info is None:
            raise ClusterMismatchError(
                f"{OVERRIDE_VARIABLE}=slurm, but this process is not a SLURM step task "
                "(SLURM_PROCID / SLURM_NTASKS / SLURM_STEP_ID are missing).\n"
                "HINT: run it with `srun python script.py` inside the allocation, "
                f"or unset {OVERRIDE_VARIABLE}."
            )
        return info
    raise ClusterMismatchError(
        f"{OVERRIDE_VARIABLE}={forced!r} is not a known source. Expected one of: {', '.join(SOURCES)}."
    )


def rank_info_from_env(env: Mapping[str, str]) -> RankInfo | None:
    """RankInfo from fulmen-launcher / torchrun variables, or None when they are absent.

    ``RANK`` and ``WORLD_SIZE`` decide: both set means a launched rank, neither means "not
    launched this way", one without the other is a broken environment and an error.
    """
    has_rank, has_world = "RANK" in env, "WORLD_SIZE" in env
    if not has_rank and not has_world:
        return None
    if has_rank != has_world:
        present, missing = ("RANK", "WORLD_SIZE") if has_rank else ("WORLD_SIZE", "RANK")
        raise ClusterMismatchError(
            f"{present} is set but {missing} is not; cannot tell this process's place in the job.\n"
            "HINT: set both (launchers do), or neither for a single process."
        )
    world_size = _int(env, "WORLD_SIZE")
    global_rank = _int(env, "RANK")
    local_world_size = _int(env, "LOCAL_WORLD_SIZE", default=world_size)
    local_rank = _int(env, "LOCAL_RANK", default=global_rank % max(local_world_size, 1))
    if local_world_size < 1 or world_size % local_world_size:
        raise ClusterMismatchError(
            f"WORLD_SIZE={world_size} is not a multiple of LOCAL_WORLD_SIZE={local_world_size}.\n"
            "HINT: every node must start the same number of ranks (--nproc-per-node)."
        )
    num_nodes = _int(env, "GROUP_WORLD_SIZE", default=world_size // local_world_size)
    node_rank = _int(env, "GROUP_RANK", default=global_rank // local_world_size)
    port = env.get("MASTER_PORT")
    return RankInfo(
        global_rank=global_rank,
        local_rank=local_rank,
        world_size=world_size,
        local_world_size=local_world_size,
        node_rank=node_rank,
        num_nodes=num_nodes,
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=int(port) if port else None,
        job_id=env.get("FULMEN_JOB_ID") or env.get("TORCHELASTIC_RUN_ID"),
        restart_count=_restart_count(env),
        run_dir=env.get(RUN_DIR_VARIABLE) or None,
        source="env",
    )


def single_process_rank_info(env: Mapping[str, str]) -> RankInfo:
    """A process that nothing launched as part of a group (``python train.py``)."""
    return RankInfo(
        restart_count=_restart_count(env),
        run_dir=env.get(RUN_DIR_VARIABLE) or None,
        job_id=env.get("FULMEN_JOB_ID") or None,
        source="single",
    )


def _rank_info_from_slurm(env: Mapping[str, str], *, required: bool) -> RankInfo | None:
    # The SLURM side owns SLURM_* parsing; a missing module only matters when SLURM was forced.
    try:
        from fulmen.slurm.environment import rank_info_from_slurm
    except ModuleNotFoundError as exc:
        if exc.name != "fulmen.slurm.environment":
            raise
        if required:
            raise ClusterMismatchError(
                f"{OVERRIDE_VARIABLE}=slurm, but fulmen.slurm.environment is not available in this install."
            ) from exc
        return None
    return rank_info_from_slurm(env)


def _restart_count(env: Mapping[str, str]) -> int:
    # FULMEN_RESTART_COUNT is ours; torchrun only sets its own name, so read that too.
    for name in (RESTART_COUNT_VARIABLE, "TORCHELASTIC_RESTART_COUNT"):
        if env.get(name):
            return _int(env, name)
    return 0


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ClusterMismatchError(f"{name} is not set. HINT: launchers set it for every rank.")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ClusterMismatchError(f"{name}={raw!r} is not an integer.") from None
