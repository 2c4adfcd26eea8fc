"""SLURM's environment names, re-exported from where they live for the SLURM backend's modules.

A SLURM task's environment (SLURM_* -> ``RankInfo``, nodelist syntax, the allocation checks) is
a cluster environment like the others and lives in ``fulmen.runtime.environments.slurm``, so
that rank detection needs nothing from this package. It is re-exported here for the backend's
own modules (``rank_entry``, ``requeue``) and for code written against the old home.

The rendezvous port is ``fulmen.jobs.ports.candidate_port(job_id, restart_count)``.
"""

from __future__ import annotations

from fulmen.runtime.environments.slurm import (
    expand_nodelist,
    in_slurm_allocation,
    is_step_task,
    parse_tasks_per_node,
    rank_info_from_slurm,
    restart_count,
    slurm_job_id,
    validate_allocation,
    validate_not_unlaunched_allocation,
)

__all__ = [
    "expand_nodelist", "in_slurm_allocation", "is_step_task",
    "parse_tasks_per_node", "rank_info_from_slurm", "restart_count", "slurm_job_id", "validate_allocation",
    "validate_not_unlaunched_allocation",
]
