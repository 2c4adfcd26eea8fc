"""A process that nothing launched as part of a group: ``python train.py``.

It is rank 0 of 1. When the Trainer asks for more ranks, the strategy starts them itself
through the local launcher (``creds_from_environment`` is False), except inside a SLURM
allocation entered without ``srun``, where that would be the wrong thing: see :meth:`validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fulmen.runtime.environments.base import RUN_DIR_VARIABLE, ClusterEnvironment, restart_count
from fulmen.runtime.environments.slurm import validate_not_unlaunched_allocation
from fulmen.runtime.ranks import RankInfo


class SingleProcessEnvironment(ClusterEnvironment):
    """The fallback: one process, keeping the run directory and restart count a launcher may have set."""

    name: ClassVar[str] = "single"
    creds_from_environment: ClassVar[bool] = False
    not_detected_hint: ClassVar[str] = ""  # every process can run as a single process

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> bool:
        return True

    def read_rank_info(self) -> RankInfo:
        return single_process_rank_info(self.environ)

    def validate(self, devices_per_node: int | None, num_nodes: int | None) -> None:
        """With several ranks asked for, only refuse an allocation without srun; else the common check.

        Several ranks from a single process means "start them here" (the strategy does), which
        is right on a workstation and wrong in a SLURM batch/salloc shell, where the user meant
        ``srun``: there it raises with a HINT instead of starting a local group.
        """
        devices, nodes = devices_per_node or 1, num_nodes or 1
        if devices * nodes > 1:
            validate_not_unlaunched_allocation(self.environ, devices=devices, num_nodes=nodes)
            return
        super().validate(devices_per_node, num_nodes)


def single_process_rank_info(env: Mapping[str, str]) -> RankInfo:
    """A process that nothing launched as part of a group (``python train.py``)."""
    return RankInfo(
        restart_count=restart_count(env),
        run_dir=env.get(RUN_DIR_VARIABLE) or None,
        job_id=env.get("FULMEN_JOB_ID") or None,
        source="single",
    )
