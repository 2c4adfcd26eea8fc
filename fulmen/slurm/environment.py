"""What the SLURM backend shares with the ranks: the rendezvous-port derivation, and SLURM's
environment names re-exported from where they live.

A SLURM task's environment (SLURM_* -> ``RankInfo``, nodelist syntax, the allocation checks) is
a cluster environment like the others and lives in ``fulmen.runtime.environments.slurm``, so
that rank detection needs nothing from this package. It is re-exported here for the backend's
own modules (``rank_entry``, ``requeue``) and for code written against the old home.

- ``master_port_for_job(job_id, restart_count)``: the rendezvous port, from the job id into a
  wide range (not its last digits, which collide for neighbouring jobs). Used by the rank entry
  and, when ``MASTER_PORT`` is unset, by ``SLURMEnvironment``.
"""

from __future__ import annotations

import hashlib

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
    "PORT_RANGE", "expand_nodelist", "in_slurm_allocation", "is_step_task", "master_port_for_job",
    "parse_tasks_per_node", "rank_info_from_slurm", "restart_count", "slurm_job_id", "validate_allocation",
    "validate_not_unlaunched_allocation",
]

# Rendezvous ports are spread over this wide range (above the registered ports that services
# commonly use); the rank entry probes the derived port and moves on if it is taken.
PORT_RANGE = (20_000, 60_000)


def master_port_for_job(job_id: str, restart: int = 0) -> int:
    """A rendezvous port spread over :data:`PORT_RANGE` by a hash of the job id and restart.

    Hashing (rather than ``job_id % 10000``) keeps neighbouring jobs apart, and the restart
    count gives a requeued run a fresh port, so a port still in TIME_WAIT from the previous
    run on the same node is not reused.
    """
    low, high = PORT_RANGE
    digest = hashlib.sha256(f"{job_id}:{restart}".encode()).digest()
    return low + int.from_bytes(digest[:4], "big") % (high - low)
