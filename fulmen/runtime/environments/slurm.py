"""A task of a SLURM job step (``srun``): SLURM_* variables -> RankInfo, and SLURM's own checks.

Pure functions on an environment mapping (no subprocesses, no I/O), so that detection is cheap
and testable with plain dicts. Only a task of a job *step* is a rank: a batch shell or an
``salloc`` shell has ``SLURM_JOB_ID`` and even ``SLURM_PROCID=0`` / ``SLURM_NTASKS=4``, but it
is one process, and treating it as one of several ranks would hang in ``init_process_group``
waiting for ranks that never start.

Environment variables read (see ``../shared/slurm/README.md`` for what a job sees):
``SLURM_JOB_ID``, ``SLURM_STEP_ID``, ``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NODEID``,
``SLURM_STEP_NUM_TASKS`` (else ``SLURM_NTASKS``), ``SLURM_STEP_NUM_NODES`` (else
``SLURM_NNODES``), ``SLURM_STEP_TASKS_PER_NODE`` (else ``SLURM_TASKS_PER_NODE``),
``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``), ``SLURM_RESTART_COUNT`` (unset on the
first run), ``SLURM_ARRAY_JOB_ID`` / ``SLURM_ARRAY_TASK_ID``, and the overrides
``MASTER_ADDR`` / ``MASTER_PORT`` / ``FULMEN_RUN_DIR``.

One thing stays with the SLURM backend (``fulmen.slurm``) and is imported when used, not at
module level: ``scontrol requeue`` (``fulmen.slurm.requeue``, behind the one seam to
SLURM's commands).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import ClassVar

from fulmen.errors import ClusterMismatchError
from fulmen.jobs.ports import candidate_port
from fulmen.runtime.environments.base import OVERRIDE_VARIABLE, ClusterEnvironment, resolve_topology, validate_launch
from fulmen.runtime.ranks import RankInfo

# Step ids that are not user steps: the batch shell and the extern step.
_NON_TASK_STEPS = {"batch", "extern", "interactive"}


class SLURMEnvironment(ClusterEnvironment):
    """An ``srun`` task: ranks, nodes and rendezvous from the step's SLURM_* variables."""

    name: ClassVar[str] = "slurm"
    not_detected_hint: ClassVar[str] = (
        f"{OVERRIDE_VARIABLE}=slurm, but this process is not a SLURM step task "
        "(SLURM_PROCID / SLURM_NTASKS / SLURM_STEP_ID are missing).\n"
        "HINT: run it with `srun python script.py` inside the allocation, "
        f"or unset {OVERRIDE_VARIABLE}."
    )

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> bool:
        return is_step_task(environ)

    def read_rank_info(self) -> RankInfo:
        info = rank_info_from_slurm(self.environ)
        if info is None:
            raise ClusterMismatchError(self.not_detected_hint)
        return info

    def validate(self, devices_per_node: int | None, num_nodes: int | None) -> None:
        """SLURM's own words for a mismatch (``--ntasks-per-node``, ``--nodes``), then the common check."""
        info = self.rank_info()
        devices, nodes = resolve_topology(info, devices_per_node, num_nodes)
        validate_allocation(info, devices=devices, num_nodes=nodes)
        validate_launch(info, devices_per_node, num_nodes)

    def hand_off(self) -> None:
        """``scontrol requeue`` this job (capped by ``--max-requeues``; once per run)."""
        from fulmen.slurm.requeue import requeue_job

        requeue_job(self.rank_info())


def derived_port(job_id: str, restarts: int) -> int:
    """The rendezvous port derived from the job id and restart count, as the SLURM rank entry derives it."""
    return candidate_port(job_id, restarts)


# ---------------------------------------------------------------- list syntaxes


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand SLURM's compact host list, like ``scontrol show hostnames``.

    ``n[1-3],gpu[01-02,05]`` -> ``n1 n2 n3 gpu01 gpu02 gpu05``; several bracket groups in one
    name expand as a product (``r[1-2]-n[1-2]`` -> ``r1-n1 r1-n2 r2-n1 r2-n2``); zero padding
    is kept. Raises ValueError on unbalanced brackets or a bad range.
    """
    hosts: list[str] = []
    for name in _split_top_level(nodelist.strip()):
        pieces: list[list[str]] = []
        for match in re.finditer(r"\[([^\]]*)\]|[^\[]+", name):
            group = match.group(1)
            pieces.append([match.group(0)] if group is None else _expand_range_group(group, nodelist))
        hosts.extend("".join(parts) for parts in itertools.product(*pieces))
    return hosts


def _split_top_level(nodelist: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    names, depth, current = [], 0, []
    for char in nodelist:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"invalid nodelist {nodelist!r}: unbalanced ']'")
        if char == "," and depth == 0:
            names.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"invalid nodelist {nodelist!r}: unbalanced '['")
    names.append("".join(current))
    return [n for n in names if n]


def _expand_range_group(group: str, nodelist: str) -> list[str]:
    values: list[str] = []
    for item in group.split(","):
        low, sep, high = item.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"invalid range {item!r} in nodelist {nodelist!r}")
        if not sep:
            values.append(low)
            continue
        if int(high) < int(low):
            raise ValueError(f"invalid range {item!r} in nodelist {nodelist!r}: end before start")
        width = len(low)
        values.extend(str(i).zfill(width) for i in range(int(low), int(high) + 1))
    return values


def parse_tasks_per_node(value: str) -> list[int]:
    """Expand ``SLURM_TASKS_PER_NODE`` syntax: ``2(x3),1`` -> ``[2, 2, 2, 1]``."""
    counts: list[int] = []
    for item in value.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if match is None:
            raise ValueError(f"invalid tasks-per-node value {value!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


# ---------------------------------------------------------------- detection


def in_slurm_allocation(environ: Mapping[str, str]) -> bool:
    """True inside any SLURM job: batch shell, salloc shell or srun task."""
    return bool(environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID"))


def is_step_task(environ: Mapping[str, str]) -> bool:
    """True only in a task that ``srun`` started (a job step), never in a batch/salloc shell."""
    step = environ.get("SLURM_STEP_ID", environ.get("SLURM_STEPID"))
    return (
        in_slurm_allocation(environ)
        and step is not None
        and step not in _NON_TASK_STEPS
        and "SLURM_PROCID" in environ
    )


def slurm_job_id(environ: Mapping[str, str]) -> str | None:
    """The id that ``scontrol requeue`` and ``scancel`` need: ``ARRAYJOB_TASK`` for array tasks."""
    array_job, array_task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")


def restart_count(environ: Mapping[str, str]) -> int:
    """Requeues so far: ``SLURM_RESTART_COUNT`` is unset on the first run, then 1, 2, ..."""
    value = environ.get("SLURM_RESTART_COUNT", "")
    return int(value) if value.isdigit() else 0


def rank_info_from_slurm(environ: Mapping[str, str]) -> RankInfo | None:
    """A :class:`RankInfo` for an srun task, or None when this is not a job-step task.

    MASTER_ADDR is the first host of the *step's* nodelist (``hostname`` is the same on every
    node of the test cluster, and on real clusters may not be the name the others resolve),
    unless ``MASTER_ADDR`` is set. MASTER_PORT is ``MASTER_PORT`` if set, else derived
    from the job id (see :func:`derived_port`).
    """
    if not is_step_task(environ):
        return None
    job_id = slurm_job_id(environ)
    assert job_id is not None  # is_step_task checked it
    world_size = int(environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS") or 1)
    num_nodes = int(environ.get("SLURM_STEP_NUM_NODES") or environ.get("SLURM_NNODES") or 1)
    node_rank = int(environ.get("SLURM_NODEID", 0))
    tasks_per_node = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    counts = parse_tasks_per_node(tasks_per_node) if tasks_per_node else [world_size // num_nodes]
    local_world_size = counts[node_rank] if node_rank < len(counts) else counts[-1]
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or ""
    hosts = expand_nodelist(nodelist) if nodelist else []
    master_addr = environ.get("MASTER_ADDR") or (hosts[0] if hosts else "127.0.0.1")
    restarts = restart_count(environ)
    port = environ.get("MASTER_PORT")
    return RankInfo(
        global_rank=int(environ["SLURM_PROCID"]),
        local_rank=int(environ.get("SLURM_LOCALID", 0)),
        world_size=world_size,
        local_world_size=local_world_size,
        node_rank=node_rank,
        num_nodes=num_nodes,
        master_addr=master_addr,
        master_port=int(port) if port else derived_port(job_id, restarts),
        job_id=job_id,
        restart_count=restarts,
        run_dir=environ.get("FULMEN_RUN_DIR") or None,
        source="slurm",
    )


# ---------------------------------------------------------------- validation


def validate_allocation(info: RankInfo, *, devices: int, num_nodes: int) -> None:
    """Check an srun step against ``Trainer(devices=..., num_nodes=...)`` before any rendezvous.

    ``devices`` is the number of ranks per node the Trainer expects. Raises
    :class:`ClusterMismatchError` with a HINT naming the setting to change.
    """
    if info.source != "slurm":
        return
    if info.local_world_size != devices:
        raise ClusterMismatchError(
            f"Trainer(devices={devices}) expects {devices} ranks per node, but this SLURM step runs "
            f"{info.local_world_size} task(s) on node {info.node_rank} (job {info.job_id}, "
            f"{info.world_size} tasks on {info.num_nodes} node(s)).\n"
            f"HINT: leave devices out of Trainer(...) (or devices='auto') to take the step's "
            f"{info.local_world_size}, or submit with --ntasks-per-node={devices} "
            f"(launch --gpus {devices} or --nproc-per-node {devices})."
        )
    if info.num_nodes != num_nodes:
        raise ClusterMismatchError(
            f"Trainer(num_nodes={num_nodes}) expects {num_nodes} node(s), but this SLURM step runs on "
            f"{info.num_nodes} node(s) (job {info.job_id}).\n"
            f"HINT: leave num_nodes out of Trainer(...) to take the step's {info.num_nodes}, "
            f"or submit with --nodes={num_nodes} (launch --nodes {num_nodes})."
        )
    if info.world_size != devices * num_nodes:
        raise ClusterMismatchError(
            f"Trainer(devices={devices}, num_nodes={num_nodes}) expects {devices * num_nodes} ranks, "
            f"but this SLURM step has {info.world_size} tasks (job {info.job_id}).\n"
            "HINT: use --ntasks-per-node instead of --ntasks so that every node runs the same "
            "number of tasks (srun -N2 -n4 may place them 3+1)."
        )


def validate_not_unlaunched_allocation(environ: Mapping[str, str], *, devices: int, num_nodes: int) -> None:
    """Refuse a multi-rank Trainer in a SLURM batch/salloc shell that srun did not start.

    Such a process is one process even though ``SLURM_NTASKS`` may say 4; without this check
    it would start a process group that waits for ranks nobody launches.
    """
    if not in_slurm_allocation(environ) or is_step_task(environ) or devices * num_nodes <= 1:
        return
    ntasks = environ.get("SLURM_NTASKS", "?")
    raise ClusterMismatchError(
        f"Trainer(devices={devices}, num_nodes={num_nodes}) asks for {devices * num_nodes} ranks, but this "
        f"process runs in SLURM job {slurm_job_id(environ)} (SLURM_NTASKS={ntasks}) without srun, "
        "so it is a single process and the other ranks would never start.\n"
        "HINT: start the script with `srun python script.py` inside the allocation, or submit it with "
        f"`launch --cluster slurm --nodes {num_nodes} --gpus {devices} script.py`."
    )
