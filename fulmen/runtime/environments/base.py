"""The interface every cluster environment implements, and the checks they share.

A cluster environment answers one question for a rank: *who started this process, and where
does it sit in the job?* Each environment (torchelastic/fulmen launcher variables, a SLURM
step task, a plain single process) owns its detection, its ``RankInfo`` and its topology
checks, so the strategy asks "the" environment and never names one
(``fulmen.runtime.cluster.detect_environment`` picks it, in one visible order).

Environments read a mapping handed to them (``os.environ`` by default), never the process
environment behind the caller's back, so each one is testable with a plain dict.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from typing import ClassVar

from fulmen.errors import ClusterMismatchError
from fulmen.jobs.rundir import RESTART_COUNT_VARIABLE, RUN_DIR_VARIABLE
from fulmen.runtime.ranks import RankInfo

OVERRIDE_VARIABLE = "FULMEN_CLUSTER"
# RUN_DIR_VARIABLE / RESTART_COUNT_VARIABLE: set by every fulmen launcher for each rank (torchrun
# sets neither); they live in the jobs layer, which both sides read.
__all__ = ["RESTART_COUNT_VARIABLE", "RUN_DIR_VARIABLE", "OVERRIDE_VARIABLE", "ClusterEnvironment"]


class ClusterEnvironment(abc.ABC):
    """Where this process sits in a job, as one launch environment describes it.

    ``name`` is what ``RankInfo.source`` and ``FULMEN_CLUSTER`` call the environment.
    ``creds_from_environment`` is False only where nothing started the ranks (a plain
    ``python train.py``): there the strategy starts them itself when the Trainer asks for more
    than one. ``not_detected_hint`` is the error shown when ``FULMEN_CLUSTER`` forces this
    environment but :meth:`detect` says the process is not in it.
    """

    name: ClassVar[str]
    creds_from_environment: ClassVar[bool] = True
    not_detected_hint: ClassVar[str]

    def __init__(self, environ: Mapping[str, str] | None = None, *, rank_info: RankInfo | None = None) -> None:
        """``rank_info`` given: the environment describes that rank instead of reading ``environ``."""
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._rank_info = rank_info

    @classmethod
    @abc.abstractmethod
    def detect(cls, environ: Mapping[str, str]) -> bool:
        """True when ``environ`` says this process was started by this environment."""

    @abc.abstractmethod
    def read_rank_info(self) -> RankInfo:
        """Build the ``RankInfo`` from ``self.environ``; raises ClusterMismatchError on a broken one."""

    def rank_info(self) -> RankInfo:
        """This process's place in the job (read once, then kept)."""
        if self._rank_info is None:
            self._rank_info = self.read_rank_info()
        return self._rank_info

    @property
    def main_address(self) -> str:
        """The rendezvous host every rank connects to."""
        return self.rank_info().master_addr

    @property
    def main_port(self) -> int | None:
        """The rendezvous port, or None where the launch did not give one."""
        return self.rank_info().master_port

    def validate(self, devices_per_node: int | None, num_nodes: int | None) -> None:
        """Check the Trainer's explicit topology against this launch, before any rendezvous.

        ``None`` means the script did not say (``devices="auto"``, no ``num_nodes``) and always
        agrees. Raises :class:`ClusterMismatchError` saying what was launched, what the Trainer
        asked for, and a HINT.
        """
        validate_launch(self.rank_info(), devices_per_node, num_nodes)

    def hand_off(self) -> None:
        """After a preemption's resume checkpoint is saved: ask the scheduler to run the job again.

        Nothing by default: local and torchx launchers restart ranks that exit with
        ``PREEMPTED_EXIT_CODE`` themselves. Called on global rank 0 only.
        """


def resolve_topology(info: RankInfo, devices_per_node: int | None, num_nodes: int | None) -> tuple[int, int]:
    """(ranks per node, nodes) this rank runs with: the Trainer's explicit values, else the launch's.

    ``None`` means the script did not say (``devices="auto"``, no ``num_nodes``): the launcher
    decided, so the value comes from the environment. Explicit values are returned as given;
    ``validate_launch`` checks them.
    """
    devices = info.local_world_size if devices_per_node is None else devices_per_node
    nodes = info.num_nodes if num_nodes is None else num_nodes
    return devices, nodes


def validate_launch(info: RankInfo, devices_per_node: int | None, num_nodes: int | None) -> None:
    """Explicit ``devices`` / ``num_nodes`` against the launch environment; errors name both.

    ``None`` (not given) always agrees: see ``resolve_topology``.
    """
    how = {"env": "launch/torchrun (WORLD_SIZE, LOCAL_WORLD_SIZE)", "slurm": "SLURM (SLURM_NTASKS, ...)"}.get(
        info.source, info.source
    )
    if devices_per_node is not None and devices_per_node != info.local_world_size:
        raise ClusterMismatchError(
            f"Trainer(devices={devices_per_node}) asks for {devices_per_node} ranks per node, but this process "
            f"was launched as one of {info.local_world_size} ranks per node ({info.world_size} in all) by {how}.\n"
            f"HINT: leave devices out (or devices='auto') to take the launch's {info.local_world_size}, "
            f"or launch {devices_per_node} ranks per node (launch --nproc-per-node {devices_per_node})."
        )
    if num_nodes is not None and num_nodes != info.num_nodes:
        raise ClusterMismatchError(
            f"Trainer(num_nodes={num_nodes}) does not match the {info.num_nodes} node(s) this job was launched "
            f"on by {how}.\n"
            f"HINT: leave num_nodes out to take the launch's {info.num_nodes}, or launch with --nodes {num_nodes}."
        )


def restart_count(env: Mapping[str, str]) -> int:
    """Restarts so far: ``FULMEN_RESTART_COUNT`` (ours), else torchrun's ``TORCHELASTIC_RESTART_COUNT``."""
    for name in (RESTART_COUNT_VARIABLE, "TORCHELASTIC_RESTART_COUNT"):
        if env.get(name):
            return int_variable(env, name)
    return 0


def int_variable(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    """An integer variable; missing without a default, or not an integer, is an error naming it."""
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ClusterMismatchError(f"{name} is not set. HINT: launchers set it for every rank.")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ClusterMismatchError(f"{name}={raw!r} is not an integer.") from None
