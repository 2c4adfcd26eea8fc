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
#: Variable or option names whose values are never written into spec.json / job.json.
SECRET_NAME = re.compile(r"token|secret|passw|pwd|key|credential|auth|private|cookie|session", re.IGNORECASE)
REDACTED = "<not stored>"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
    setup: tuple[str, ...] = ()  # shell lines run in the batch script before srun (`module load cuda`)

    def __post_init__(self) -> None:
        named = [(f"--{f}", getattr(self, f)) for f in ("partition", "time", "account", "qos", "constraint", "mem")]
        for flag, value in [*named, *(("--sbatch-arg", f"{k}={v}") for k, v in self.extra)]:
            if value is not None and _CONTROL.search(value):
                raise LaunchError(
                    f"{flag} {value!r} contains a control character (newline, tab, ...); each becomes one "
                    "#SBATCH line, so it must be one line of printable text.\nHINT: remove the line break."
                )
        if not _SIGNAL_SPEC.match(self.signal):
            raise LaunchError(
                f"--signal {self.signal!r} is not a valid sbatch signal spec.\n"
                "Expected [B:]SIG[@SECONDS], e.g. USR2@90 or USR1@120."
            )
        if self.max_requeues < 0:
            raise LaunchError(f"--max-requeues must be >= 0, got {self.max_requeues}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise LaunchError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}")
        for line in self.setup:
            if "\n" in line or "\r" in line:
                raise LaunchError(
                    f"--setup {line!r} holds a line break; each --setup value is one line of the batch script.\n"
                    "HINT: repeat the flag, one line each: --setup 'module load cuda' --setup 'source venv/bin/activate'"
                )


@dataclass(frozen=True)
class KubernetesOptions:
    """Settings for the torchx kubernetes scheduler (``--cluster k8s``).

    ``cpu`` / ``mem_mb`` are per replica (one pod per node). ``volumes`` are
    PersistentVolumeClaims as (claim name, mount path); the run directory goes on the first one
    (``fulmen.launcher.torchx_appdef.pod_run_dir``), so checkpoints outlive a pod.
    """

    image: str | None = None
    namespace: str = "default"
    queue: str | None = None  # Volcano queue
    cpu: int = 4
    mem_mb: int = 16_384
    volumes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.cpu < 1:
            raise LaunchError(f"--cpu must be >= 1 (CPUs per replica), got {self.cpu}")
        if self.mem_mb < 1:
            raise LaunchError(f"--memory must be at least 1M per replica, got {self.mem_mb} MiB")
        for claim, mount in self.volumes:
            parse_volume(f"{claim}:{mount}")
        mounts = [mount for _, mount in self.volumes]
        if len(set(mounts)) != len(mounts):
            raise LaunchError(f"--volume: two claims are mounted at the same path ({', '.join(mounts)}).\n"
                              "HINT: give each --volume its own mount path.")


_CLAIM_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]i?)?B?$", re.IGNORECASE)
_MIB_PER_UNIT = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_volume(text: str) -> tuple[str, str]:
    """``--volume CLAIM:/mount/path`` -> (claim, path): a PersistentVolumeClaim mounted in every pod."""
    claim, sep, mount = text.partition(":")
    problem = None
    if not sep or not claim or not mount:
        problem = "it is not CLAIM:/MOUNT/PATH"
    elif not _CLAIM_NAME.match(claim):
        problem = f"{claim!r} is not a Kubernetes claim name (lowercase letters, digits, '-' and '.')"
    elif not mount.startswith("/"):
        problem = f"the mount path {mount!r} is not absolute"
    if problem:
        raise LaunchError(
            f"--volume {text!r}: {problem}.\n"
            "Expected the name of a PersistentVolumeClaim, a colon and an absolute path in the pod.\n"
            "HINT: e.g. --volume runs-pvc:/mnt/runs (the run directory, with its checkpoints, goes there)."
        )
    return claim, mount.rstrip("/") or "/"


def parse_memory_mb(text: str) -> int:
    """``--memory 64G`` -> MiB per replica. Units K, M, G, T (binary, as sbatch: 1G = 1024M; ``Gi``
    and a trailing ``B`` mean the same); a bare number is MiB."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise LaunchError(
            f"--memory {text!r} is not a memory size.\n"
            "Expected a number with an optional unit M, G or T (1G = 1024M; a bare number is M).\n"
            "HINT: e.g. --memory 64G or --memory 500M."
        )
    number, unit = match.groups()
    return round(float(number) * _MIB_PER_UNIT[(unit or "")[:1].upper()])


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
    rdzv_timeout: float = 900.0  # seconds the nodes of a local multi-node launch wait for each other
    name: str | None = None
    run_root: str = "fulmen_runs"
    run_dir: str | None = None
    max_restarts: int = 0
    hang_timeout: float = 600.0  # seconds without progress before the local launcher stops a hung job
    env: tuple[tuple[str, str], ...] = ()
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    k8s: KubernetesOptions = field(default_factory=KubernetesOptions)
    force: bool = False  # --force: start more local CPU ranks than this machine has CPUs

    def __post_init__(self) -> None:
        if self.name is not None and _CONTROL.search(self.name):
            # A newline would reach the sbatch script as a directive line of its own.
            raise LaunchError(
                f"--name {self.name!r} contains a control character (newline, tab, ...); expected one line "
                "of printable text.\nHINT: use letters, digits, '-', '_' or '.', e.g. --name my-run."
            )
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
        if not self.rdzv_timeout > 0:
            raise LaunchError(f"--rdzv-timeout must be > 0 seconds, got {self.rdzv_timeout:g}")
        if self.max_restarts < 0:
            raise LaunchError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if self.k8s.volumes and self.cluster != "k8s":
            raise LaunchError(
                f"--volume is for --cluster k8s (a PersistentVolumeClaim); this job runs on --cluster {self.cluster}.\n"
                "HINT: elsewhere, put the run directory on shared storage with --run-root PATH."
            )
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

    def to_record(self) -> dict[str, Any]:
        """What the run records (``spec.json``, ``job.json``) store: ``to_dict`` without secrets.

        The value of every ``--env`` variable and script option whose name looks like a secret
        (``SECRET_NAME``: HF_TOKEN, AWS_SECRET_ACCESS_KEY, --api-key, ...) is replaced by
        ``REDACTED``; only the name is kept. The ranks never read these values back from a
        record: each backend hands them over in the launch itself.
        """
        data = self.to_dict()
        data["env"] = [[key, REDACTED if SECRET_NAME.search(key) else value] for key, value in self.env]
        data["args"] = list(redact_args(self.args))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Inverse of ``to_dict`` (tuples come back from JSON as lists)."""
        data = dict(data)
        slurm = dict(data.pop("slurm", {}) or {})
        slurm["extra"] = tuple(tuple(kv) for kv in slurm.get("extra", ()))
        slurm["setup"] = tuple(slurm.get("setup", ()))
        k8s = dict(data.pop("k8s", {}) or {})
        k8s["volumes"] = tuple(tuple(kv) for kv in k8s.get("volumes", ()))
        data["args"] = tuple(data.get("args", ()))
        data["env"] = tuple(tuple(kv) for kv in data.get("env", ()))
        return cls(**data, slurm=SlurmOptions(**slurm), k8s=KubernetesOptions(**k8s))


def redact_args(args: tuple[str, ...]) -> tuple[str, ...]:
    """Script arguments with the values of secret-looking options (``--token X``, ``--api-key=X``) replaced."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        option, sep, _ = arg.partition("=")
        if arg.startswith("-") and SECRET_NAME.search(option.lstrip("-")):
            if sep:
                out.append(f"{option}={REDACTED}")
                continue
            hide_next = True
        out.append(arg)
    return tuple(out)


def ranks_see(spec: JobSpec) -> str:
    """What a script's Trainer gets from this launch, as ``--dry-run`` and the README say it.

    ``Trainer(devices="auto")`` and a Trainer without ``num_nodes`` take these values; explicit
    ones must equal them (fulmen.runtime.distributed.resolve_topology).
    """
    return (
        f"ranks see: num_nodes={spec.nodes}, devices={spec.ranks_per_node} per node, "
        f"world size {spec.world_size} (a Trainer without num_nodes/devices takes these; explicit values must match)"
    )
