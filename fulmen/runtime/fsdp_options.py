"""FSDPStrategy's arguments (Lightning 2.6's FSDP1 spellings) translated to torch's FSDP2 ``fully_shard``.

Lightning's ``FSDPStrategy`` takes FSDP1 objects (``ShardingStrategy``, ``CPUOffload``,
``MixedPrecision``, ``ModuleWrapPolicy`` or a set of layer classes); fulmen shards with
``torch.distributed.fsdp.fully_shard`` (FSDP2), whose knobs are different. Each function here
takes what a Lightning script passes and returns the FSDP2 equivalent, or raises naming what
was given, what is accepted and how to fix it, so a wrong argument fails at ``FSDPStrategy(...)``
rather than deep inside ``fit``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from fulmen.errors import MisconfigurationException, close_matches

# Lightning's sharding_strategy names -> (hybrid: 2-D replicate x shard mesh, reshard_after_forward)
SHARDING_STRATEGIES: dict[str, tuple[bool, bool]] = {
    "FULL_SHARD": (False, True),
    "SHARD_GRAD_OP": (False, False),
    "HYBRID_SHARD": (True, True),
    "_HYBRID_SHARD_ZERO2": (True, False),
}
STATE_DICT_TYPES = ("full",)
# fully_shard keywords a script may pass through FSDPStrategy(**kwargs); fulmen sets the others
_FULLY_SHARD_KWARGS = ("reshard_after_forward", "shard_placement_fn", "ignored_params")
# FSDP1 keywords whose FSDP2 behaviour is built in (FSDP2 always keeps the original parameters)
_BUILT_IN_KWARGS = ("use_orig_params",)

WrapPolicy = Callable[[nn.Module, int], bool]


def sharding_layout(sharding_strategy: Any) -> tuple[bool, bool]:
    """(hybrid, reshard_after_forward) for a ``ShardingStrategy`` member or its name."""
    name = getattr(sharding_strategy, "name", sharding_strategy)
    if not isinstance(name, str):
        name = repr(sharding_strategy)
    key = name.upper()
    if key == "NO_SHARD":
        raise MisconfigurationException(
            "FSDPStrategy(sharding_strategy='NO_SHARD') replicates every parameter, which is what DDP does.\n"
            "HINT: use Trainer(strategy='ddp') for unsharded data parallel training."
        )
    if key not in SHARDING_STRATEGIES:
        raise MisconfigurationException(
            f"FSDPStrategy(sharding_strategy={sharding_strategy!r}) is not a sharding strategy; expected one of "
            f"{list(SHARDING_STRATEGIES)} (or a torch.distributed.fsdp.ShardingStrategy member)."
            + close_matches(key, SHARDING_STRATEGIES)
        )
    return SHARDING_STRATEGIES[key]


def check_state_dict_type(state_dict_type: Any) -> str:
    """``"full"``: the only checkpoint layout fulmen writes for FSDP (one file, loadable anywhere)."""
    if state_dict_type == "sharded":
        raise MisconfigurationException(
            "FSDPStrategy(state_dict_type='sharded') is not supported by fulmen: its FSDP checkpoints are full "
            "state dicts (one file, the same keys as a single-process checkpoint).\n"
            "HINT: drop state_dict_type (the default is 'full')."
        )
    if state_dict_type not in STATE_DICT_TYPES:
        raise MisconfigurationException(
            f"FSDPStrategy(state_dict_type={state_dict_type!r}) is not a state dict type; expected 'full'.\n"
            "HINT: drop state_dict_type (the default is 'full')."
        )
    return str(state_dict_type)


def offload_policy(cpu_offload: Any) -> Any:
    """FSDP2's ``CPUOffloadPolicy`` for Lightning's ``cpu_offload`` (bool, ``CPUOffload``, or the policy)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

    if cpu_offload is None or cpu_offload is False:
        return OffloadPolicy()
    if isinstance(cpu_offload, OffloadPolicy):
        return cpu_offload
    offload_params = getattr(cpu_offload, "offload_params", None)  # FSDP1's CPUOffload dataclass
    if cpu_offload is True or offload_params is not None:
        if offload_params is False:
            return OffloadPolicy()
        return CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    raise MisconfigurationException(
        f"FSDPStrategy(cpu_offload={cpu_offload!r}) is not understood; expected a bool, "
        "torch.distributed.fsdp.CPUOffload(offload_params=...) or torch.distributed.fsdp.CPUOffloadPolicy().\n"
        "HINT: pass cpu_offload=True to keep parameters, gradients and optimizer state on the CPU."
    )


def mixed_precision_policy(mixed_precision: Any) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` for Lightning's ``mixed_precision`` (FSDP1 ``MixedPrecision`` or the policy)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if mixed_precision is None:
        return MixedPrecisionPolicy()
    if isinstance(mixed_precision, MixedPrecisionPolicy):
        return mixed_precision
    if all(hasattr(mixed_precision, name) for name in ("param_dtype", "reduce_dtype", "buffer_dtype")):
        # FSDP1's MixedPrecision: FSDP2 casts parameters and gradient reductions; buffers keep their dtype.
        # FSDP1 casts the root's inputs by default (cast_root_forward_inputs): FSDP2 has one switch for both.
        cast_inputs = getattr(mixed_precision, "cast_forward_inputs", False) or getattr(
            mixed_precision, "cast_root_forward_inputs", True)
        return MixedPrecisionPolicy(param_dtype=mixed_precision.param_dtype, reduce_dtype=mixed_precision.reduce_dtype,
                                    cast_forward_inputs=bool(cast_inputs))  # fmt: skip
    raise MisconfigurationException(
        f"FSDPStrategy(mixed_precision={mixed_precision!r}) is not understood; expected "
        "torch.distributed.fsdp.MixedPrecision(...) or torch.distributed.fsdp.MixedPrecisionPolicy(...).\n"
        "HINT: e.g. MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)."
    )


def wrap_policy(auto_wrap_policy: Any) -> WrapPolicy | None:
    """``should_wrap(module, nonwrapped_numel)`` for Lightning's ``auto_wrap_policy``.

    Accepted, as Lightning accepts them: a set/list/tuple of ``nn.Module`` classes (each
    instance becomes its own FSDP unit), FSDP1's ``ModuleWrapPolicy``, or an FSDP1 policy
    function ``(module, recurse, nonwrapped_numel) -> bool`` such as
    ``functools.partial(size_based_auto_wrap_policy, min_num_params=...)``.
    """
    if auto_wrap_policy is None:
        return None
    classes = getattr(auto_wrap_policy, "_module_classes", auto_wrap_policy)  # ModuleWrapPolicy keeps them there
    if isinstance(classes, (set, frozenset, list, tuple)):
        layer_types = tuple(_module_classes(classes))
        return lambda module, numel: isinstance(module, layer_types)
    if callable(auto_wrap_policy):
        try:
            inspect.signature(auto_wrap_policy).bind(nn.Module(), recurse=False, nonwrapped_numel=0)
        except TypeError as exc:
            raise MisconfigurationException(
                f"FSDPStrategy(auto_wrap_policy={auto_wrap_policy!r}) does not take (module, recurse, "
                f"nonwrapped_numel): {exc}.\nHINT: pass a set of layer classes, e.g. auto_wrap_policy={{nn.Linear}}."
            ) from None
        return lambda module, numel: bool(auto_wrap_policy(module=module, recurse=False, nonwrapped_numel=numel))
    raise MisconfigurationException(
        f"FSDPStrategy(auto_wrap_policy={auto_wrap_policy!r}) is not a wrap policy; expected a set of nn.Module "
        "classes, torch.distributed.fsdp.wrap.ModuleWrapPolicy, or a policy function.\n"
        "HINT: e.g. auto_wrap_policy={nn.TransformerEncoderLayer}."
    )


def _module_classes(classes: Iterable[Any]) -> list[type[nn.Module]]:
    found = list(classes)
    bad = [c for c in found if not (isinstance(c, type) and issubclass(c, nn.Module))]
    if bad:
        raise MisconfigurationException(
            f"FSDPStrategy(auto_wrap_policy=...) holds {bad!r}, which are not nn.Module classes.\n"
            "HINT: list layer classes, e.g. auto_wrap_policy={nn.TransformerEncoderLayer}."
        )
    return found


def fully_shard_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The extra ``FSDPStrategy(**kwargs)`` that go to ``fully_shard``; others are refused by name."""
    unknown = sorted(set(kwargs) - set(_FULLY_SHARD_KWARGS) - set(_BUILT_IN_KWARGS))
    if unknown:
        raise MisconfigurationException(
            f"FSDPStrategy got {unknown}, which fulmen's FSDP (torch's fully_shard) does not take; extra keywords "
            f"accepted: {list(_FULLY_SHARD_KWARGS + _BUILT_IN_KWARGS)}.\n"
            "HINT: FSDP1-only options (backward_prefetch, limit_all_gathers, ...) have no FSDP2 equivalent; drop them."
        )
    return {k: v for k, v in kwargs.items() if k in _FULLY_SHARD_KWARGS}


def activation_checkpointing_check(activation_checkpointing: Any, activation_checkpointing_policy: Any) -> WrapPolicy | None:
    """Which submodules recompute their activations in backward (Lightning's two spellings).

    ``activation_checkpointing`` is a layer class or a list of them (Lightning's older argument);
    ``activation_checkpointing_policy`` takes what ``auto_wrap_policy`` takes. Not both.
    """
    if activation_checkpointing is not None and activation_checkpointing_policy is not None:
        raise MisconfigurationException(
            "FSDPStrategy got both activation_checkpointing and activation_checkpointing_policy.\n"
            "HINT: pass only activation_checkpointing_policy, e.g. activation_checkpointing_policy={MyBlock}."
        )
    if activation_checkpointing is not None:
        classes = activation_checkpointing if isinstance(activation_checkpointing, (list, tuple, set)) else [
            activation_checkpointing]
        return wrap_policy(set(_module_classes(classes)))
    return wrap_policy(activation_checkpointing_policy)
