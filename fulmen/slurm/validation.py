"""Submit-time checks: catch a job that can never run before it sits in the queue.

``check_spec`` needs no cluster (script exists, ranks per node given for multi-node jobs);
``check_against_cluster`` asks the controller about the partition (through
``fulmen.slurm.commands``). Both raise :class:`fulmen.errors.LaunchError` with a HINT.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fulmen.errors import LaunchError, close_matches
from fulmen.jobs.spec import JobSpec
from fulmen.slurm import commands
from fulmen.slurm.commands import PartitionInfo


def check_spec(spec: JobSpec, cwd: Path | None = None) -> None:
    """Checks that need only the spec and the local filesystem."""
    if not spec.entry_is_module:
        script = Path(spec.entry)
        if not script.is_absolute():
            script = (cwd or Path.cwd()) / script
        if not script.is_file():
            raise LaunchError(
                f"The script {spec.entry!r} does not exist (looked for {script}).\n"
                "HINT: pass the path of a Python file relative to the current directory, "
                "or use -m package.module for a module."
            )
    if spec.nodes > 1 and spec.gpus_per_node is None and spec.nproc_per_node is None:
        raise LaunchError(
            f"--nodes {spec.nodes} was given without --gpus or --nproc-per-node, so it is not known "
            "how many ranks to start on each node.\n"
            f"HINT: add --gpus N (one rank per GPU) or --nproc-per-node N (N ranks per node on CPU), "
            f"e.g. launch --cluster slurm --nodes {spec.nodes} --gpus 8 {spec.entry}"
        )


def check_against_cluster(spec: JobSpec, partitions: Mapping[str, PartitionInfo] | None = None) -> PartitionInfo:
    """Check the partition and node count with the controller; returns the partition used.

    ``partitions`` defaults to what ``scontrol show partition`` reports (tests pass a table).
    """
    table = dict(partitions) if partitions is not None else commands.list_partitions()
    if not table:
        raise LaunchError("The SLURM controller reports no partitions; nothing can run.")
    name = spec.slurm.partition
    if name is None:
        defaults = [p for p in table.values() if p.is_default]
        if not defaults:
            raise LaunchError(
                "No --partition was given and the cluster has no default partition.\n"
                f"HINT: pass --partition, one of: {', '.join(sorted(table))}"
            )
        partition = defaults[0]
    elif name not in table:
        raise LaunchError(
            f"--partition {name!r} does not exist on this cluster.{close_matches(name, table)}\n"
            f"HINT: use one of: {', '.join(sorted(table))} (see `sinfo`)."
        )
    else:
        partition = table[name]
    limit = partition.total_nodes if partition.max_nodes is None else min(partition.total_nodes, partition.max_nodes)
    if spec.nodes > limit:
        raise LaunchError(
            f"--nodes {spec.nodes} asks for more nodes than partition {partition.name!r} has "
            f"({partition.total_nodes} node(s)"
            + (f", at most {partition.max_nodes} per job" if partition.max_nodes is not None else "")
            + ").\n"
            f"HINT: use --nodes {limit} or less, or a bigger partition (see `sinfo`)."
        )
    if spec.gpus_per_node is not None:
        if partition.gpus_per_node is None:
            raise LaunchError(
                f"--gpus {spec.gpus_per_node} asks for GPUs, but partition {partition.name!r} has none.\n"
                f"HINT: use a GPU partition, or --nproc-per-node {spec.gpus_per_node} for CPU ranks."
            )
        if spec.gpus_per_node > partition.gpus_per_node:
            raise LaunchError(
                f"--gpus {spec.gpus_per_node} asks for more GPUs per node than partition "
                f"{partition.name!r} has ({partition.gpus_per_node} per node).\n"
                f"HINT: use --gpus {partition.gpus_per_node} and more --nodes."
            )
    return partition
