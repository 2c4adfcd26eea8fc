"""Ranks started by a fulmen launcher (``launch``, the local agent) or by torchrun.

Both set ``RANK / LOCAL_RANK / WORLD_SIZE / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT``
(torch.distributed.elastic's names); fulmen's launchers add ``FULMEN_RUN_DIR``,
``FULMEN_RESTART_COUNT`` and ``FULMEN_JOB_ID``. ``RANK`` and ``WORLD_SIZE`` decide: both set is
a launched rank, neither is "not launched this way", one without the other is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fulmen.errors import ClusterMismatchError
from fulmen.runtime.environments.base import OVERRIDE_VARIABLE, RUN_DIR_VARIABLE, ClusterEnvironment, int_variable, restart_count
from fulmen.runtime.ranks import RankInfo


class TorchElasticEnvironment(ClusterEnvironment):
    """A rank of ``launch`` / torchrun: everything comes from torch.distributed.elastic's variables."""

    name: ClassVar[str] = "env"
    not_detected_hint: ClassVar[str] = (
        f"{OVERRIDE_VARIABLE}=env, but RANK and WORLD_SIZE are not set.\n"
        "HINT: start the script with `launch --nproc-per-node N script.py` or torchrun, "
        f"or unset {OVERRIDE_VARIABLE}."
    )

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> bool:
        # Either variable claims the process: a half-set pair must be reported, not skipped.
        return "RANK" in environ or "WORLD_SIZE" in environ

    def read_rank_info(self) -> RankInfo:
        info = rank_info_from_env(self.environ)
        if info is None:
            raise ClusterMismatchError(self.not_detected_hint)
        return info


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
    world_size = int_variable(env, "WORLD_SIZE")
    global_rank = int_variable(env, "RANK")
    local_world_size = int_variable(env, "LOCAL_WORLD_SIZE", default=world_size)
    local_rank = int_variable(env, "LOCAL_RANK", default=global_rank % max(local_world_size, 1))
    if local_world_size < 1 or world_size % local_world_size:
        raise ClusterMismatchError(
            f"WORLD_SIZE={world_size} is not a multiple of LOCAL_WORLD_SIZE={local_world_size}.\n"
            "HINT: every node must start the same number of ranks (--nproc-per-node)."
        )
    num_nodes = int_variable(env, "GROUP_WORLD_SIZE", default=world_size // local_world_size)
    node_rank = int_variable(env, "GROUP_RANK", default=global_rank // local_world_size)
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
        restart_count=restart_count(env),
        run_dir=env.get(RUN_DIR_VARIABLE) or None,
        source="env",
    )
