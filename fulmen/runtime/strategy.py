"""Strategy: the one place the Trainer goes for anything that depends on how many ranks run.

The Trainer never calls ``torch.distributed``; reductions for ``self.log(sync_dist=True)``,
``all_gather``, agreement on ``should_stop`` and barriers all go through a ``Strategy``.
``SingleDeviceStrategy`` (here) runs one process on one device; ``DDPStrategy``
(``fulmen.runtime.distributed``) is imported only when more than one rank takes part, and
``FSDPStrategy`` (``fulmen.runtime.fsdp``) only for ``strategy="fsdp"``. Checkpoints read and
write weights and optimizer states through the strategy (``module_state_dict`` & co.), so a
sharding strategy can gather full tensors and slice them again.

Contract for ``setup_module``: with more than one rank the Trainer passes a
``LightningModuleWrapper`` (so that a DDP wrapper's ``forward`` runs ``training_step`` and
gradient hooks fire); with one rank it passes the LightningModule itself.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from fulmen.errors import MisconfigurationException, close_matches
from fulmen.runtime.cluster import detect_environment, environment_for
from fulmen.runtime.environments import ClusterEnvironment
from fulmen.runtime.ranks import RankInfo

T = TypeVar("T")

_ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
_STRATEGIES = ("auto", "single_device", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp",
               "fsdp_cpu_offload")
# Lightning 2.6's other registered strategy names: named in the error, with what to use instead
_LIGHTNING_ONLY_STRATEGIES = (
    "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload", "deepspeed_stage_3",
    "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme", "ddp_fork", "ddp_notebook",
    "ddp_find_unused_parameters_false", "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true", "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true", "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true", "single_tpu", "single_xla", "xla", "xla_debug",
)  # fmt: skip


class Strategy(abc.ABC):
    """How this process takes part in training: its rank, its device, and the collectives."""

    # every rank holds the whole model and optimizer state, so one rank alone can write a
    # checkpoint without a collective (``hang_rescue``); a sharding strategy gathers instead
    replicated_state = True

    def __init__(self, rank_info: RankInfo, root_device: torch.device) -> None:
        self.rank_info = rank_info
        self.root_device = root_device

    @property
    def global_rank(self) -> int:
        return self.rank_info.global_rank

    @property
    def local_rank(self) -> int:
        return self.rank_info.local_rank

    @property
    def node_rank(self) -> int:
        return self.rank_info.node_rank

    @property
    def world_size(self) -> int:
        return self.rank_info.world_size

    @property
    def num_nodes(self) -> int:
        return self.rank_info.num_nodes

    @property
    def is_global_zero(self) -> bool:
        return self.rank_info.global_rank == 0

    @abc.abstractmethod
    def setup_environment(self) -> None:
        """Prepare the process (process group, device) at fit/validate/test start, before prepare_data."""

    @abc.abstractmethod
    def setup_module(self, module: nn.Module) -> nn.Module:
        """Move (and, for several ranks, wrap) ``module``; returns what the steps run on."""

    @abc.abstractmethod
    def process_dataloader(self, dataloader: Any, *, training: bool, use_distributed_sampler: bool) -> Any:
        """The loader this rank iterates (with a distributed sampler when several ranks share data)."""

    @abc.abstractmethod
    def barrier(self, name: str | None = None) -> None:
        """Wait until every rank reaches this point."""

    @abc.abstractmethod
    def broadcast(self, obj: T, src: int = 0) -> T:
        """``obj`` as rank ``src`` has it."""

    @abc.abstractmethod
    def reduce(self, tensor: Tensor, op: str = "mean") -> Tensor:
        """``tensor`` reduced over ranks with "mean", "sum", "max" or "min"."""

    @abc.abstractmethod
    def all_gather(self, tensor: Tensor, sync_grads: bool = False) -> Tensor:
        """Every rank's ``tensor`` stacked on a new leading dimension (none added for one rank)."""

    @abc.abstractmethod
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every rank (``all``) or any rank decided True."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Release what setup_environment acquired."""

    # --- what checkpoints hold (a sharding strategy gathers and slices here) ---------------

    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """The module's weights as a checkpoint stores them (full tensors, Lightning's keys)."""
        return module.state_dict()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """One optimizer's state as a checkpoint stores it (``torch.optim``'s format)."""
        return optimizer.state_dict()

    def load_module_state_dict(self, module: nn.Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        """Put checkpoint weights into ``module`` (laid out as this strategy runs it)."""
        module.load_state_dict(state_dict, strict=strict)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Put a checkpoint's optimizer state into ``optimizer``."""
        optimizer.load_state_dict(state)


class ParallelStrategy(Strategy, abc.ABC):
    """Several processes (Lightning's ``ParallelStrategy``): DDPStrategy and FSDPStrategy derive from it."""


class SingleDeviceStrategy(Strategy):
    """One process, one device: every collective is the identity."""

    def setup_environment(self) -> None:
        if self.root_device.type == "cuda":
            torch.cuda.set_device(self.root_device)

    def setup_module(self, module: nn.Module) -> nn.Module:
        return module.to(self.root_device)

    def process_dataloader(self, dataloader: Any, *, training: bool, use_distributed_sampler: bool) -> Any:
        return dataloader

    def barrier(self, name: str | None = None) -> None:
        return None

    def broadcast(self, obj: T, src: int = 0) -> T:
        return obj

    def reduce(self, tensor: Tensor, op: str = "mean") -> Tensor:
        return tensor

    def all_gather(self, tensor: Tensor, sync_grads: bool = False) -> Tensor:
        return tensor

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    def teardown(self) -> None:
        return None


class LightningModuleWrapper(nn.Module):
    """Routes ``forward`` to the step method the Trainer is running, so DDP sees the steps."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.step_name = "training_step"

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, self.step_name)(*args, **kwargs)


def _device_count(devices: Any) -> int:
    if devices in (None, "auto"):
        return 1
    if isinstance(devices, str):
        devices = devices.strip()
        if devices == "-1":
            return max(torch.cuda.device_count(), 1)
        if "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
        return int(devices)
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if devices == -1:
        return max(torch.cuda.device_count(), 1)
    return int(devices)


def resolve_accelerator(accelerator: str) -> str:
    """"cpu", "cuda" or "mps" for an accelerator flag; errors name the choices."""
    name = str(accelerator).lower()
    if name not in _ACCELERATORS:
        raise MisconfigurationException(
            f"Trainer(accelerator={accelerator!r}) is not a known accelerator; expected one of {list(_ACCELERATORS)}."
            + close_matches(name, _ACCELERATORS)
        )
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise MisconfigurationException(
                f"Trainer(accelerator={accelerator!r}) needs CUDA, but torch.cuda.is_available() is False.\n"
                "HINT: use accelerator='cpu' (or 'auto') on this machine."
            )
        return "cuda"
    return name


def _cluster_environment(rank_info: RankInfo | None, environ: Mapping[str, str] | None) -> ClusterEnvironment:
    """The environment this process was launched by; a given ``rank_info`` is taken as it is."""
    if rank_info is not None:
        return environment_for(rank_info, environ)
    return detect_environment(dict(environ) if environ is not None else None)


def select_strategy(
    accelerator: str = "auto",
    strategy: str | Strategy = "auto",
    devices: Any = "auto",
    num_nodes: int | None = None,
    sync_batchnorm: bool = False,
    *,
    rank_info: RankInfo | None = None,
    environ: Mapping[str, str] | None = None,
) -> Strategy:
    """The Strategy for these Trainer flags and this process's launch environment.

    ``devices="auto"`` and ``num_nodes=None`` (the Trainer's defaults) mean "what the launcher
    started": under ``launch``, torchrun or srun the ranks take the job's topology, so an
    unchanged script runs on any number of nodes. Explicit values are checked against the
    launch in ``DDPStrategy.setup_environment``.
    """
    if isinstance(strategy, Strategy):
        # A user-built DDPStrategy(...) knows its DDP options but not this launch: fill that in.
        configure = getattr(strategy, "configure", None)
        if callable(configure) and not getattr(strategy, "_configured", True):
            environment = _cluster_environment(rank_info, environ)
            configure(
                rank_info=environment.rank_info(),
                accelerator=resolve_accelerator(accelerator),
                devices=devices,
                num_nodes=num_nodes,
                sync_batchnorm=sync_batchnorm,
                cluster_environment=environment,
            )
        return strategy
    _check_strategy_name(strategy)
    device_type = resolve_accelerator(accelerator)
    environment = _cluster_environment(rank_info, environ)
    info = environment.rank_info()
    if str(strategy).startswith("fsdp"):
        from fulmen.runtime.fsdp import FSDPStrategy

        return FSDPStrategy(rank_info=info, cluster_environment=environment, accelerator=device_type, devices=devices,
                            num_nodes=num_nodes, sync_batchnorm=sync_batchnorm, strategy=str(strategy),
                            cpu_offload=True if strategy == "fsdp_cpu_offload" else None)  # fmt: skip
    wanted_ranks = _device_count(devices) * int(num_nodes or 1)
    if info.world_size > 1 or wanted_ranks > 1 or str(strategy).startswith("ddp"):
        if wanted_ranks > 1 or info.world_size > 1:
            from fulmen.runtime.distributed import DDPStrategy

            return DDPStrategy(  # type: ignore[call-arg]
                rank_info=info,
                cluster_environment=environment,
                accelerator=device_type,
                devices=devices,
                num_nodes=num_nodes,
                sync_batchnorm=sync_batchnorm,
                strategy=strategy,
            )
    if device_type == "cuda":
        index = info.local_rank
        if isinstance(devices, (list, tuple)) and devices:
            index = int(devices[0])
        root = torch.device("cuda", index)
    else:
        root = torch.device(device_type)
    return SingleDeviceStrategy(info, root)


def _check_strategy_name(strategy: Any) -> None:
    """A strategy string fulmen does not have: what was given, what there is, what to use instead."""
    name = str(strategy)
    if name in _STRATEGIES:
        return
    if name in _LIGHTNING_ONLY_STRATEGIES:
        if name.startswith("ddp"):
            instead = "use 'ddp' (or 'ddp_find_unused_parameters_true'): fulmen starts each rank as its own process"
        elif "xla" in name or "tpu" in name:
            instead = "fulmen trains on CPUs and CUDA GPUs; use 'ddp' or 'fsdp' there"
        else:
            instead = "use 'fsdp' to shard parameters, gradients and optimizer state across ranks, or 'ddp' to replicate them"
        hint = f"HINT: {name!r} is a Lightning strategy that fulmen does not implement; {instead}."
    else:
        hint = "HINT: pass one of the names above, or a Strategy instance from fulmen.strategies."
    raise MisconfigurationException(
        f"Trainer(strategy={strategy!r}) is not a known strategy; expected one of {list(_STRATEGIES)}."
        + close_matches(name, _STRATEGIES) + "\n" + hint
    )
