"""RankInfo: where this process sits in a job.

Built by ``fulmen.runtime.cluster`` from an environment mapping (fulmen/torchrun variables,
SLURM variables, or nothing for a single process), and by the launchers when they start ranks.
It imports nothing from fulmen so that every layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankInfo:
    """One process's place in a (possibly single-process) job.

    ``source`` says which environment it was read from: ``"single"`` (no launcher),
    ``"env"`` (fulmen launcher or torchrun variables) or ``"slurm"`` (srun task).
    ``run_dir`` is the run directory shared by every rank and every restart of one logical
    run, or None when nothing launched us (plain ``python train.py``).
    """

    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    node_rank: int = 0
    num_nodes: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    job_id: str | None = None
    restart_count: int = 0
    run_dir: str | None = None
    source: str = "single"

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"RankInfo.world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.global_rank < self.world_size:
            raise ValueError(
                f"RankInfo.global_rank must be in [0, {self.world_size}), got {self.global_rank}"
            )
        if not 0 <= self.local_rank < self.local_world_size:
            raise ValueError(
                f"RankInfo.local_rank must be in [0, {self.local_world_size}), got {self.local_rank}"
            )
        if not 0 <= self.node_rank < self.num_nodes:
            raise ValueError(f"RankInfo.node_rank must be in [0, {self.num_nodes}), got {self.node_rank}")

    @property
    def is_distributed(self) -> bool:
        """True when more than one rank takes part (a process group is needed)."""
        return self.world_size > 1

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0
