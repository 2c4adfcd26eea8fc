"""FSDPStrategy: ``Trainer(strategy="fsdp")`` on torch's FSDP2 ``fully_shard``.

Lightning 2.6's ``FSDPStrategy`` is built on FSDP1 (``FullyShardedDataParallel``); fulmen takes
its constructor arguments (``fsdp_options`` translates them) and shards with ``fully_shard``,
which keeps the module's own class and parameter names and turns each parameter into a
``DTensor`` shard. What a user sees matches Lightning's:

- ``configure_model`` runs before sharding (the Trainer calls it for every strategy);
- ``activation_checkpointing_policy`` layers are wrapped with torch's ``checkpoint_wrapper``
  before sharding (their state-dict keys stay the same);
- during fit the module's parameters are ``DTensor`` shards, one slice per rank;
- checkpoints hold *full* state dicts (``state_dict_type="full"``): the same keys and shapes as a
  DDP or one-process checkpoint, the optimizer state in ``torch.optim``'s own format, so
  ``Model.load_from_checkpoint`` works on one process and a fit resumes exactly;
- saving is a collective: every rank calls ``trainer.save_checkpoint`` (ModelCheckpoint does).

Process group, rank checks, data sharding and collectives are DDPStrategy's (gloo on CPU, nccl
on CUDA). Unlike DDPStrategy, teardown keeps the process group until the process exits: the
module stays sharded after ``fit`` (as in Lightning), and ``trainer.test(model)`` or
``trainer.save_checkpoint`` after ``fit`` need the group its shards live on.

The step methods are registered as FSDP forward methods, so ``validation_step`` & co. gather
the root's parameters the way ``forward`` does (Lightning's forward redirection does this job).
"""

from __future__ import annotations

import atexit
import inspect
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fulmen.runtime import fsdp_options
from fulmen.runtime.distributed import DEFAULT_TIMEOUT, DDPStrategy
from fulmen.runtime.environments import ClusterEnvironment
from fulmen.runtime.ranks import RankInfo
from fulmen.runtime.strategy import LightningModuleWrapper

__all__ = ["FSDPStrategy"]

_STEP_METHODS = ("training_step", "validation_step", "test_step", "predict_step")


class FSDPStrategy(DDPStrategy):
    """Fully sharded data parallel (module docstring); Lightning's constructor arguments."""

    strategy_name = "fsdp"
    replicated_state = False  # each rank holds a shard: a checkpoint is a gather (a collective)

    def __init__(
        self,
        *,
        auto_wrap_policy: Any = None,
        cpu_offload: Any = None,
        mixed_precision: Any = None,
        sharding_strategy: Any = "FULL_SHARD",
        state_dict_type: str = "full",
        device_mesh: Any = None,
        activation_checkpointing: Any = None,
        activation_checkpointing_policy: Any = None,
        process_group_backend: str | None = None,
        timeout: timedelta = DEFAULT_TIMEOUT,
        rank_info: RankInfo | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        accelerator: str | None = None,
        devices: Any = None,
        num_nodes: int | None = None,
        sync_batchnorm: bool | None = None,
        strategy: str = "fsdp",
        **kwargs: Any,
    ) -> None:
        # every argument is checked here, before any process starts
        self.hybrid, self.reshard_after_forward = fsdp_options.sharding_layout(sharding_strategy)
        self.state_dict_type = fsdp_options.check_state_dict_type(state_dict_type)
        self.offload_policy = fsdp_options.offload_policy(cpu_offload)
        self.mp_policy = fsdp_options.mixed_precision_policy(mixed_precision)
        self.should_wrap = fsdp_options.wrap_policy(auto_wrap_policy)
        self.should_checkpoint = fsdp_options.activation_checkpointing_check(activation_checkpointing,
                                                                             activation_checkpointing_policy)
        self.fully_shard_kwargs = {"reshard_after_forward": self.reshard_after_forward,
                                   **fsdp_options.fully_shard_kwargs(kwargs)}  # fmt: skip
        self.device_mesh_flag = device_mesh
        self.sharding_strategy = sharding_strategy
        self.cpu_offload = cpu_offload
        self.mixed_precision = mixed_precision
        self.auto_wrap_policy = auto_wrap_policy
        self._mesh: Any = None
        super().__init__(
            process_group_backend=process_group_backend, timeout=timeout, rank_info=rank_info,
            cluster_environment=cluster_environment, accelerator=accelerator, devices=devices,
            num_nodes=num_nodes, sync_batchnorm=sync_batchnorm, strategy=strategy,
        )  # fmt: skip

    # --- process group: kept until exit (module docstring) ---------------------------------

    def teardown(self) -> None:
        if self._owns_process_group and dist.is_initialized():
            atexit.register(_destroy_at_exit, self._claimed_port)
        self._owns_process_group = False
        self._claimed_port = None  # released at exit with the group

    # --- sharding --------------------------------------------------------------------------

    def setup_module(self, module: nn.Module) -> nn.Module:
        """Shard the LightningModule in place; returns what the Trainer runs its steps on."""
        from torch.distributed.fsdp import FSDPModule

        root = module.module if isinstance(module, LightningModuleWrapper) else module
        if self.sync_batchnorm:
            raise fsdp_options.MisconfigurationException(
                "Trainer(sync_batchnorm=True) with strategy='fsdp' is not supported by fulmen.\n"
                "HINT: drop sync_batchnorm, or use strategy='ddp' on GPUs for synchronised batch statistics."
            )
        if not isinstance(root, FSDPModule):  # a second fit/test with this module: already sharded
            root.to(self.root_device)
            self._shard(root)
        return module

    def device_mesh(self) -> Any:
        """The mesh the shards live on: 1-D over all ranks, or (replicate, shard) for hybrid sharding."""
        if self._mesh is not None:
            return self._mesh
        from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

        device_type = self.root_device.type
        flag = self.device_mesh_flag
        if isinstance(flag, DeviceMesh):
            self._mesh = flag
        elif flag is not None:
            shape = tuple(int(n) for n in flag)
            if len(shape) != 2 or shape[0] * shape[1] != self.world_size:
                raise fsdp_options.MisconfigurationException(
                    f"FSDPStrategy(device_mesh={flag!r}) does not fit this run's {self.world_size} rank(s); expected "
                    "(replicas, shards) whose product is the world size.\n"
                    f"HINT: e.g. device_mesh=({max(self.num_nodes, 1)}, {self.world_size // max(self.num_nodes, 1)}): "
                    "one replica per node, sharded over the node's devices."
                )
            self._mesh = init_device_mesh(device_type, shape, mesh_dim_names=("replicate", "shard"))
        elif self.hybrid:
            nodes = max(self.num_nodes, 1)
            self._mesh = init_device_mesh(device_type, (nodes, self.world_size // nodes),
                                          mesh_dim_names=("replicate", "shard"))  # fmt: skip
        else:
            self._mesh = init_device_mesh(device_type, (self.world_size,))
        return self._mesh

    def _shard(self, root: nn.Module) -> None:
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        options = {"mesh": self.device_mesh(), "mp_policy": self.mp_policy, "offload_policy": self.offload_policy,
                   **self.fully_shard_kwargs}  # fmt: skip
        if self.should_checkpoint is not None:
            _checkpoint_activations(root, self.should_checkpoint)
        if self.should_wrap is not None:
            wrapped: set[int] = set()
            # reversed pre-order: every module comes after all of its descendants
            for submodule in reversed(list(root.modules())):
                if submodule is root:
                    continue
                numel = sum(p.numel() for p in _params_outside(submodule, wrapped))
                if self.should_wrap(submodule, numel):
                    fully_shard(submodule, **options)
                    wrapped.add(id(submodule))
        unbound = {name: getattr(type(root), name, None) for name in _STEP_METHODS}
        fully_shard(root, **options)
        for name, function in unbound.items():
            if function is None:
                continue
            register_fsdp_forward_method(root, name)
            # torch's wrapper is bound twice over: without this, inspect.signature drops `batch`
            getattr(root, name).__func__.__signature__ = inspect.signature(function)

    # --- full state dicts ------------------------------------------------------------------

    def module_state_dict(self, module: nn.Module) -> dict[str, Any]:
        """Every shard gathered (a collective: all ranks call it), on the CPU, under the usual keys."""
        return {key: _full(value) for key, value in module.state_dict().items()}

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``torch.optim``'s own format with full tensors (a collective: all ranks call it)."""
        state = optimizer.state_dict()
        full = {index: {key: _full(value) for key, value in entry.items()} for index, entry in state["state"].items()}
        return {**state, "state": full}

    def load_module_state_dict(self, module: nn.Module, state_dict: dict[str, Any], strict: bool = True) -> None:
        """Load a full state dict: each rank keeps its own slice of every sharded tensor."""
        current = module.state_dict()
        sharded = {key: _like(current.get(key), value) for key, value in state_dict.items()}
        module.load_state_dict(sharded, strict=strict)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a full optimizer state: per-parameter tensors are sliced like their parameters."""
        optimizer.load_state_dict(state)
        for param, entry in optimizer.state.items():
            for key, value in list(entry.items()):
                entry[key] = _like(param, value)


def _checkpoint_activations(root: nn.Module, should_checkpoint: fsdp_options.WrapPolicy) -> None:
    """Wrap the chosen submodules so they recompute activations in backward (as Lightning does for FSDP)."""
    import functools

    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        CheckpointWrapper,
        apply_activation_checkpointing,
        checkpoint_wrapper,
    )

    if any(isinstance(m, CheckpointWrapper) for m in root.modules()):
        return  # the user wrapped layers in configure_model: theirs stands
    apply_activation_checkpointing(
        root,
        checkpoint_wrapper_fn=functools.partial(checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
        check_fn=lambda m: should_checkpoint(m, sum(p.numel() for p in m.parameters())),
    )


def _params_outside(module: nn.Module, wrapped: set[int]) -> list[nn.Parameter]:
    """``module``'s parameters that no already-wrapped descendant owns (FSDP1's nonwrapped_numel)."""
    inside = {id(p) for m in module.modules() if id(m) in wrapped for p in m.parameters()}
    return [p for p in module.parameters() if id(p) not in inside]


def _full(value: Any) -> Any:
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return value.full_tensor().cpu()
    return value


def _like(reference: Any, value: Any) -> Any:
    """``value`` (a full tensor) laid out as ``reference``: this rank's slice when it is a DTensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(reference, DTensor) or not isinstance(value, torch.Tensor) or isinstance(value, DTensor):
        return value
    if tuple(value.shape) != tuple(reference.shape):
        return value  # a scalar such as Adam's step, or a mismatch load_state_dict reports itself
    local = value.to(device=reference.to_local().device, dtype=reference.dtype)
    # every rank holds the whole checkpoint: each takes its own slice, nothing is sent
    return distribute_tensor(local, reference.device_mesh, reference.placements, src_data_rank=None)


def _destroy_at_exit(claimed_port: int | None) -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
    if claimed_port is not None:
        from fulmen.jobs import ports

        ports.release_port(claimed_port)
