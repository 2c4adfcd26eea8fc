"""JobSpec: the one description of a job, shared by every backend.

Plain frozen dataclasses with no I/O (torchx's AppDef is the model). The CLI turns argv into a
JobSpec; a backend (local, slurm, k8s, torchx-local) turns a JobSpec into running ranks.
Validation happens here, before anything runs, with messages that say what to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fulmen.errors import LaunchError

CLUSTERS = ("local", "slurm", "k8s", "torchx-local")
_SIGNAL_SPEC = re.compile(r"^(B:)?(SIG)?(USR1|USR2|TERM|INT|HUP|QUIT|ALRM)(@\d+)?$")


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch settings; ``extra`` holds any other directive as KEY -> VALUE (``--sbatch-arg``)."""

    partition: str | None = None
    time: str | None = None  # sbatch --time syntax, e.g. "60", "1:00:00", "2-00:00:00"
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    exclusive: bool = False
    signal: str = "USR2@90"  # warning signal before the time limit, sbatch --signal syntax
    max_requeues: int = 3
    requeue_on_failure: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _SIGNAL_SPEC.match(self.signal):
            raise LaunchError(
                f"--signal {self.signal!r} is not a valid sbatch signal spec.\n"
                "Expected [B:]SIG[@SECONDS], e.g. USR2@90 or USR1@120."
            )
        if self.max_requeues < 0:
            raise LaunchError(f"--max-requeues must be >= 0, got {self.max_requeues}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise LaunchError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}")


@dataclass(frozen=True)
class KubernetesOptions:
    """Settings for the torchx kubernetes scheduler (``--cluster k8s``)."""

    image: str | None = None
    namespace: str = "default"
    queue: str | None = None  # Volcano queue
    cpu: int = 4
    mem_mb: int = 16_384


@dataclass(frozen=True)
class JobSpec:
    """What to run and where.

    ``entry`` is a script path (``train.py``) or ``-m package.module``-style module name when
    ``entry_is_module`` is set. ``gpus_per_node`` asks for GPU ranks (one per GPU);
    ``nproc_per_node`` asks for that many ranks on whatever accelerator the script picks.
    At most one of the two is set; with neither, one rank per node runs.
    """

    entry: str
    args: tuple[str, ...] = ()
    entry_is_module: bool = False
    cluster: str = "local"
    nodes: int = 1
    gpus_per_node: int | None = None
    nproc_per_node: int | None = None
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    name: str | None = None
    run_root: str = "fulmen_runs"
    run_dir: str | None = None
    max_restarts: int = 0
    hang_timeout: float = 600.0  # seconds without progress before the local launcher stops a hung job
    env: tuple[tuple[str, str], ...] = ()
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    k8s: KubernetesOptions = field(default_factory=KubernetesOptions)

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise LaunchError(
                f"--cluster {self.cluster!r} is not known. Expected one of: {', '.join(CLUSTERS)}."
            )
        if self.nodes < 1:
            raise LaunchError(f"--nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node is not None and self.nproc_per_node is not None:
            raise LaunchError(
                f"--gpus {self.gpus_per_node} and --nproc-per-node {self.nproc_per_node} were both given.\n"
                "HINT: use --gpus N for one rank per GPU, or --nproc-per-node N for N ranks on CPU."
            )
        for flag, value in (("--gpus", self.gpus_per_node), ("--nproc-per-node", self.nproc_per_node)):
            if value is not None and value < 1:
                raise LaunchError(f"{flag} must be >= 1, got {value}")
        if not 0 <= self.node_rank < self.nodes:
            raise LaunchError(f"--node-rank must be in [0, {self.nodes}), got {self.node_rank}")
        if self.max_restarts < 0:
            raise LaunchError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if not self.hang_timeout > 0:
            raise LaunchError(
                f"--hang-timeout must be > 0 seconds, got {self.hang_timeout}.\n"
                "HINT: a large value (e.g. 86400) effectively turns the watchdog off."
            )

    @property
    def ranks_per_node(self) -> int:
        """Processes started on each node."""
        return self.gpus_per_node or self.nproc_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def job_name(self) -> str:
        """The name shown by the scheduler: ``name`` or the entry's stem."""
        if self.name:
            return self.name
        stem = self.entry.rsplit("/", 1)[-1]
        return stem[:-3] if stem.endswith(".py") else stem

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, written to ``<run_dir>/spec.json``."""
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Inverse of ``to_dict`` (tuples come back from JSON as lists)."""
        data = dict(data)
        slurm = dict(data.pop("slurm", {}) or {})
        slurm["extra"] = tuple(tuple(kv) for kv in slurm.get("extra", ()))
        k8s = dict(data.pop("k8s", {}) or {})
        data["args"] = tuple(data.get("args", ()))
        data["env"] = tuple(tuple(kv) for kv in data.get("env", ()))
        return cls(**data, slurm=SlurmOptions(**slurm), k8s=KubernetesOptions(**k8s))


def ranks_see(spec: JobSpec) -> str:
    """What a script's Trainer gets from this launch, as ``--dry-run`` and the README say it.

    ``Trainer(devices="auto")`` and a Trainer without ``num_nodes`` take these values; explicit
    ones must equal them (fulmen.runtime.distributed.resolve_topology).
    """
    return (
        f"ranks see: num_nodes={spec.nodes}, devices={spec.ranks_per_node} per node, "
        f"world size {spec.world_size} (a Trainer without num_nodes/devices takes these; explicit values must match)"
    )
