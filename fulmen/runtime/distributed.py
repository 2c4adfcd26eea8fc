"""DDPStrategy: one process per device, a process group, DDP-wrapped module, sharded data.

Life of a rank (the Trainer calls these through the ``Strategy`` seam):

1. ``setup_environment``: the cluster environment that launched this rank
   (``fulmen.runtime.environments``) checks the Trainer's ``devices`` / ``num_nodes`` against
   the launch (errors with a HINT *before* ``init_process_group``, which would
   otherwise wait for ranks that never come), then init the group: gloo on CPU, nccl on CUDA.
   Values the script did not give (``devices="auto"``, ``num_nodes=None``) are not checked:
   the launcher decides the topology and the ranks take it from the environment.
   ``resolve_topology`` is that rule as a pure function.
   A plain ``python train.py`` with ``Trainer(devices=2)`` is not a rank yet: it hands the
   script to the local launcher, which starts the ranks, and exits with their exit code.
2. ``setup_module``: move to the device, SyncBatchNorm if asked, wrap in DDP.
3. ``process_dataloader``: a DistributedSampler per rank (``fulmen.runtime.data_sharding``).
4. Collectives for logging, checkpointing decisions and preemption; ``teardown``.

The process group lives as long as the process (as in Lightning): ``teardown`` keeps it, the
next ``validate``/``test``/``predict``/``fit`` of this or another Trainer re-uses it, and an
``atexit`` hook destroys it (and releases a claimed port) if fulmen created it. Destroying it
after each run and re-initialising on the same MASTER_PORT hung: a fast rank reached rank 0's
old TCPStore before it was gone.

``Trainer(strategy="ddp")``, ``"ddp_find_unused_parameters_true"`` and
``Trainer(strategy=DDPStrategy(static_graph=True, gradient_as_bucket_view=True, ...))`` all
land here; keyword arguments that are not ours go to ``DistributedDataParallel``.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fulmen.errors import ClusterMismatchError, MisconfigurationException
from fulmen.runtime.cluster import environment_for
from fulmen.runtime.data_sharding import distributed_loader
from fulmen.runtime.environments import ClusterEnvironment
from fulmen.runtime.environments.base import resolve_topology, validate_launch
from fulmen.runtime.ranks import RankInfo
from fulmen.runtime.strategy import ParallelStrategy

__all__ = ["DDPStrategy", "resolve_topology", "validate_launch"]

T = TypeVar("T")

_REDUCE_OPS = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
DEFAULT_TIMEOUT = timedelta(minutes=30)


class DDPStrategy(ParallelStrategy):
    """Distributed data parallel over ``torch.distributed`` (module docstring)."""

    strategy_name = "ddp"

    def __init__(
        self,
        *,
        find_unused_parameters: bool = False,
        static_graph: bool = False,
        process_group_backend: str | None = None,
        timeout: timedelta = DEFAULT_TIMEOUT,
        rank_info: RankInfo | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        accelerator: str | None = None,
        devices: Any = None,
        num_nodes: int | None = None,
        sync_batchnorm: bool | None = None,
        strategy: str = "ddp",
        **ddp_kwargs: Any,
    ) -> None:
        super().__init__(rank_info or RankInfo(), torch.device("cpu"))
        self.find_unused_parameters = find_unused_parameters or strategy == "ddp_find_unused_parameters_true"
        self.static_graph = static_graph
        self.process_group_backend = process_group_backend
        self.timeout = timeout
        self.ddp_kwargs = ddp_kwargs
        self.accelerator = accelerator or "cpu"
        self.devices = devices
        self.num_nodes_flag = num_nodes  # None: as many nodes as the launcher started
        self.sync_batchnorm = bool(sync_batchnorm)
        self._owns_process_group = False
        self._claimed_port: int | None = None
        self._control_group: Any = None  # gloo side group for decisions when the main backend is nccl
        self._cluster_environment = cluster_environment
        self._configured = rank_info is not None
        if rank_info is not None:
            self.configure(rank_info=rank_info, accelerator=self.accelerator, devices=devices,
                           num_nodes=self.num_nodes_flag, sync_batchnorm=self.sync_batchnorm,
                           cluster_environment=cluster_environment)

    def configure(
        self,
        *,
        rank_info: RankInfo,
        accelerator: str,
        devices: Any,
        num_nodes: int | None,
        sync_batchnorm: bool,
        cluster_environment: ClusterEnvironment | None = None,
    ) -> DDPStrategy:
        """Fill in what the Trainer knows (a user-built ``DDPStrategy(...)`` starts without it)."""
        self.rank_info = rank_info
        self._cluster_environment = cluster_environment
        self.accelerator = accelerator
        self.devices = devices
        self.num_nodes_flag = None if num_nodes is None else int(num_nodes)
        self.sync_batchnorm = bool(sync_batchnorm) or self.sync_batchnorm
        if accelerator == "cuda":
            index = rank_info.local_rank
            if isinstance(devices, (list, tuple)) and len(devices) > index:
                index = int(devices[index])
            self.root_device = torch.device("cuda", index)
        else:
            self.root_device = torch.device(accelerator)
        self._configured = True
        return self

    # --- process group -------------------------------------------------------------------

    @property
    def cluster_environment(self) -> ClusterEnvironment:
        """The environment that launched this rank (built from ``rank_info`` when none was given)."""
        if self._cluster_environment is None or self._cluster_environment.rank_info() != self.rank_info:
            self._cluster_environment = environment_for(self.rank_info)
        return self._cluster_environment

    @property
    def devices_per_node(self) -> int | None:
        """Ranks per node the Trainer asked for (None: "auto", take what the launcher started)."""
        devices = self.devices
        if devices in (None, "auto", -1, "-1"):
            return None
        if isinstance(devices, (list, tuple)):
            return len(devices)
        if isinstance(devices, str) and "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
        return int(devices)

    def setup_environment(self) -> None:
        environment = self.cluster_environment
        # Checked before any rendezvous, in the environment's own words (init_process_group would wait).
        environment.validate(self.devices_per_node, self.num_nodes_flag)
        if not environment.creds_from_environment and self._expected_world_size() > 1:
            self._start_ranks_and_exit()
        if self.root_device.type == "cuda":
            torch.cuda.set_device(self.root_device)
        if dist.is_available() and dist.is_initialized():
            if dist.get_world_size() != self.world_size or dist.get_rank() != self.global_rank:
                raise ClusterMismatchError(
                    f"A process group is already initialized as rank {dist.get_rank()} of {dist.get_world_size()}, "
                    f"but this Trainer runs as rank {self.global_rank} of {self.world_size}.\n"
                    "HINT: the group lives until the process exits (an earlier Trainer or your own "
                    "init_process_group made it); use the same devices/num_nodes for every Trainer in one "
                    "process, or run the other world size in a separate process."
                )
            self._control_group = _KEPT["control_group"]
            return
        addr, port = self.rank_info.master_addr, self.rank_info.master_port
        if port is None and self.world_size == 1:
            # A one-rank DDP run (debugging the DDP path in plain python): nobody else needs
            # to find us, so any free local port will do.
            from fulmen.jobs import ports

            addr = "127.0.0.1"
            port, claimed = ports.choose_port(f"single-ddp-{os.getpid()}", environ={})
            self._claimed_port = port if claimed else None
        if port is None:
            raise ClusterMismatchError(
                f"Rank {self.global_rank} of {self.world_size} has no rendezvous port (MASTER_PORT is not set).\n"
                "HINT: start the ranks with `launch`, torchrun or srun, which set it."
            )
        backend = self.process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")
        dist.init_process_group(
            backend,
            init_method=f"tcp://{addr}:{port}",
            rank=self.global_rank,
            world_size=self.world_size,
            timeout=self.timeout,
        )
        self._owns_process_group = True
        if backend == "nccl":
            # Control-plane decisions (stop? preempted?) are taken at every step; over nccl each
            # one would sync the CUDA stream to read the answer. A CPU side group costs no sync.
            self._control_group = dist.new_group(backend="gloo")
        _keep_until_exit(self._control_group, self._claimed_port)
        self._claimed_port = None  # released at exit with the group

    def _expected_world_size(self) -> int:
        return (self.devices_per_node or 1) * (self.num_nodes_flag or 1)

    def _start_ranks_and_exit(self) -> None:
        """``python train.py`` with ``Trainer(devices=N)``: become the launcher of N ranks."""
        if self.num_nodes_flag is not None and self.num_nodes_flag > 1:
            raise ClusterMismatchError(
                f"Trainer(num_nodes={self.num_nodes_flag}) in a process that no launcher started.\n"
                f"HINT: run `launch --nodes {self.num_nodes_flag} ...` on each node, or submit with "
                "`launch --cluster slurm`."
            )
        from fulmen.launcher.local import relaunch_main_script

        code = relaunch_main_script(self.devices_per_node or 1, gpus=self.root_device.type == "cuda")
        sys.exit(code)

    def teardown(self) -> None:
        # The group (and a claimed port) stay until exit: see the module docstring.
        self._owns_process_group = False
        self._control_group = None

    # --- module and data -----------------------------------------------------------------

    def setup_module(self, module: nn.Module) -> nn.Module:
        module = module.to(self.root_device)
        if self.sync_batchnorm:
            if self.root_device.type != "cuda":
                raise MisconfigurationException(
                    "Trainer(sync_batchnorm=True) on CPU: torch's SyncBatchNorm runs on CUDA devices only.\n"
                    "HINT: drop sync_batchnorm on CPU (each rank keeps its own batch statistics), or use GPUs."
                )
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        return DistributedDataParallel(
            module,
            device_ids=device_ids,
            find_unused_parameters=self.find_unused_parameters,
            static_graph=self.static_graph,
            **self.ddp_kwargs,
        )

    def process_dataloader(self, dataloader: Any, *, training: bool, use_distributed_sampler: bool) -> Any:
        if not use_distributed_sampler or self.world_size == 1:
            return dataloader
        return distributed_loader(dataloader, num_replicas=self.world_size, rank=self.global_rank)

    # --- collectives ---------------------------------------------------------------------

    def barrier(self, name: str | None = None) -> None:
        if dist.is_initialized():
            dist.barrier()

    def broadcast(self, obj: T, src: int = 0) -> T:
        if not dist.is_initialized():
            return obj
        box = [obj]
        if self._control_group is not None:
            dist.broadcast_object_list(box, src=src, group=self._control_group, device=torch.device("cpu"))
        else:
            dist.broadcast_object_list(box, src=src, device=self._collective_device())
        return box[0]

    def reduce(self, tensor: Tensor, op: str = "mean") -> Tensor:
        if op not in _REDUCE_OPS:
            raise MisconfigurationException(f"reduce op {op!r} is not supported; expected one of {list(_REDUCE_OPS)}.")
        if not dist.is_initialized():
            return tensor
        result = tensor.detach().clone()
        if op == "mean" and not result.is_floating_point():
            result = result.float()
        device = result.device
        result = result.to(self._collective_device())
        dist.all_reduce(result, op=_REDUCE_OPS[op])
        if op == "mean":
            result = result / self.world_size
        return result.to(device)

    def all_gather(self, tensor: Tensor, sync_grads: bool = False) -> Tensor:
        if not dist.is_initialized():
            return tensor
        device = tensor.device
        local = tensor.to(self._collective_device())
        if sync_grads:
            from torch.distributed.nn.functional import all_gather as differentiable_all_gather

            gathered = list(differentiable_all_gather(local.contiguous()))
        else:
            gathered = [torch.empty_like(local) for _ in range(self.world_size)]
            dist.all_gather(gathered, local.contiguous())
        return torch.stack(gathered).to(device)

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        if not dist.is_initialized():
            return bool(decision)
        if self._control_group is not None:
            votes = torch.tensor([int(bool(decision))])
            dist.all_reduce(votes, op=dist.ReduceOp.SUM, group=self._control_group)
        else:
            votes = torch.tensor([int(bool(decision))], device=self._collective_device())
            dist.all_reduce(votes, op=dist.ReduceOp.SUM)
        count = int(votes.item())
        return count == self.world_size if all else count > 0

    def _collective_device(self) -> torch.device:
        # nccl only moves CUDA tensors; gloo only CPU ones.
        return self.root_device if dist.get_backend() == "nccl" else torch.device("cpu")


# --- the process group fulmen created, kept until the process exits ---------------------------

_KEPT: dict[str, Any] = {"control_group": None, "claimed_port": None, "owned": False, "registered": False}


def _keep_until_exit(control_group: Any, claimed_port: int | None) -> None:
    """Remember what fulmen created so later runs re-use it and exit destroys it (once)."""
    import atexit

    _KEPT["control_group"] = control_group
    _KEPT["claimed_port"] = claimed_port
    _KEPT["owned"] = True
    if not _KEPT["registered"]:
        atexit.register(destroy_process_group)
        _KEPT["registered"] = True


def destroy_process_group() -> None:
    """Destroy the group fulmen created and release its port (atexit; tests call it directly).

    Why not in ``teardown``: see the module docstring. A group the user created is theirs.
    """
    if _KEPT["owned"] and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _KEPT["owned"] = False
    _KEPT["control_group"] = None
    port, _KEPT["claimed_port"] = _KEPT["claimed_port"], None
    if port is not None:
        from fulmen.jobs import ports

        ports.release_port(port)
