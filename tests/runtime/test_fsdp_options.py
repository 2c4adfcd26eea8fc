"""FSDPStrategy's arguments: Lightning's FSDP1 spellings become fully_shard's, bad ones fail at construction."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from torch.distributed.fsdp import (
    CPUOffload,
    CPUOffloadPolicy,
    MixedPrecision,
    MixedPrecisionPolicy,
    OffloadPolicy,
    ShardingStrategy,
)
from torch.distributed.fsdp.wrap import ModuleWrapPolicy, size_based_auto_wrap_policy

from fulmen.errors import MisconfigurationException
from fulmen.runtime import fsdp_options
from fulmen.runtime.fsdp import FSDPStrategy


@pytest.mark.parametrize(("given", "expected"), [
    ("FULL_SHARD", (False, True)), ("full_shard", (False, True)), (ShardingStrategy.FULL_SHARD, (False, True)),
    ("SHARD_GRAD_OP", (False, False)), (ShardingStrategy.HYBRID_SHARD, (True, True)),
    ("_HYBRID_SHARD_ZERO2", (True, False)),
])  # fmt: skip
def test_sharding_strategy_maps_to_mesh_and_reshard(given: object, expected: tuple[bool, bool]) -> None:
    assert fsdp_options.sharding_layout(given) == expected


def test_no_shard_points_to_ddp_and_typos_get_suggestions() -> None:
    with pytest.raises(MisconfigurationException, match="HINT: use Trainer\\(strategy='ddp'\\)"):
        FSDPStrategy(sharding_strategy=ShardingStrategy.NO_SHARD)
    with pytest.raises(MisconfigurationException, match="Did you mean 'FULL_SHARD'"):
        FSDPStrategy(sharding_strategy="FULL_SHRAD")


def test_state_dict_type_full_only() -> None:
    assert FSDPStrategy().state_dict_type == "full"
    with pytest.raises(MisconfigurationException, match="'sharded'\\) is not supported by fulmen"):
        FSDPStrategy(state_dict_type="sharded")
    with pytest.raises(MisconfigurationException, match="expected 'full'"):
        FSDPStrategy(state_dict_type="fulll")


def test_cpu_offload_spellings() -> None:
    assert type(fsdp_options.offload_policy(None)) is OffloadPolicy
    assert type(fsdp_options.offload_policy(CPUOffload(offload_params=False))) is OffloadPolicy
    for given in (True, CPUOffload(offload_params=True), CPUOffloadPolicy()):
        assert isinstance(fsdp_options.offload_policy(given), CPUOffloadPolicy)
    with pytest.raises(MisconfigurationException, match="cpu_offload='yes'"):
        FSDPStrategy(cpu_offload="yes")


def test_mixed_precision_from_fsdp1_object() -> None:
    policy = fsdp_options.mixed_precision_policy(MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert policy.cast_forward_inputs  # FSDP1 casts the root's inputs by default (cast_root_forward_inputs)
    given = MixedPrecisionPolicy(param_dtype=torch.float16)
    assert fsdp_options.mixed_precision_policy(given) is given
    with pytest.raises(MisconfigurationException, match="mixed_precision='bf16'"):
        FSDPStrategy(mixed_precision="bf16")


def test_auto_wrap_policy_spellings() -> None:
    linear, relu = nn.Linear(10, 10), nn.ReLU()
    for given in ({nn.Linear}, [nn.Linear], ModuleWrapPolicy({nn.Linear})):
        should_wrap = fsdp_options.wrap_policy(given)
        assert should_wrap is not None and should_wrap(linear, 110) and not should_wrap(relu, 0)
    by_size = fsdp_options.wrap_policy(functools.partial(size_based_auto_wrap_policy, min_num_params=100))
    assert by_size is not None and by_size(linear, 110) and not by_size(linear, 99)
    assert fsdp_options.wrap_policy(None) is None
    with pytest.raises(MisconfigurationException, match="not nn.Module classes"):
        FSDPStrategy(auto_wrap_policy={"Linear"})
    with pytest.raises(MisconfigurationException, match="does not take \\(module, recurse, nonwrapped_numel\\)"):
        FSDPStrategy(auto_wrap_policy=lambda module: True)
    with pytest.raises(MisconfigurationException, match="is not a wrap policy"):
        FSDPStrategy(auto_wrap_policy=3)


def test_extra_keywords_go_to_fully_shard_or_are_refused_by_name() -> None:
    strategy = FSDPStrategy(reshard_after_forward=False, use_orig_params=True)
    assert strategy.fully_shard_kwargs == {"reshard_after_forward": False}
    assert FSDPStrategy(sharding_strategy="SHARD_GRAD_OP").fully_shard_kwargs == {"reshard_after_forward": False}
    with pytest.raises(MisconfigurationException, match="\\['backward_prefetch'\\]"):
        FSDPStrategy(backward_prefetch=None)


def test_activation_checkpointing_spellings() -> None:
    linear = nn.Linear(2, 2)
    for old, new in ((nn.Linear, None), ([nn.Linear], None), (None, {nn.Linear})):
        check = fsdp_options.activation_checkpointing_check(old, new)
        assert check is not None and check(linear, 6) and not check(nn.ReLU(), 0)
    assert fsdp_options.activation_checkpointing_check(None, None) is None
    with pytest.raises(MisconfigurationException, match="got both activation_checkpointing and"):
        FSDPStrategy(activation_checkpointing=nn.Linear, activation_checkpointing_policy={nn.Linear})
    with pytest.raises(MisconfigurationException, match="not nn.Module classes"):
        FSDPStrategy(activation_checkpointing="Linear")
