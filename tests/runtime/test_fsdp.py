"""FSDPStrategy in one process (a 1-rank gloo group): selection, sharding during fit, full
checkpoints interchangeable with a single-device run, exact resume, the step methods' signatures.
The 2-rank runs are in tests/integration/local/test_fsdp_local.py."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import CPUOffloadPolicy
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime.fsdp import FSDPStrategy
from fulmen.runtime.ranks import RankInfo
from fulmen.runtime.strategy import select_strategy


@pytest.fixture(autouse=True)
def _no_group_left_behind() -> Iterator[None]:
    """FSDPStrategy keeps its process group until exit (its shards live on it): end it per test."""
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net: nn.Module | None = None
        self.seen: dict[str, Any] = {}

    def configure_model(self) -> None:
        self.seen.setdefault("configure_model_calls", 0)
        self.seen["configure_model_calls"] += 1
        if self.net is None:
            self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # outside the step: inside it FSDP has gathered the root's parameters for the forward
        self.seen.setdefault("param_type", type(self.net[0].weight).__name__)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)), batch_size=4)


def _fit(root: Path, strategy: Any, epochs: int, ckpt_path: Any = None) -> tuple[pl.Trainer, Net, dict[str, Any]]:
    pl.seed_everything(3)
    trainer = pl.Trainer(strategy=strategy, accelerator="cpu", max_epochs=epochs, default_root_dir=str(root),
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)  # fmt: skip
    model = Net()
    trainer.fit(model, _loader(), _loader(), ckpt_path=ckpt_path)
    path = root / f"{epochs}.ckpt"
    trainer.save_checkpoint(path)
    return trainer, model, torch.load(path, weights_only=False)


def test_string_names_select_fsdp() -> None:
    strategy = select_strategy("cpu", "fsdp", rank_info=RankInfo())
    assert isinstance(strategy, FSDPStrategy) and type(strategy.offload_policy) is not CPUOffloadPolicy
    offload = select_strategy("cpu", "fsdp_cpu_offload", rank_info=RankInfo())
    assert isinstance(offload.offload_policy, CPUOffloadPolicy)
    user_built = FSDPStrategy(sharding_strategy="SHARD_GRAD_OP")
    assert select_strategy("cpu", user_built, rank_info=RankInfo()) is user_built
    assert user_built.root_device == torch.device("cpu") and user_built.world_size == 1
    assert isinstance(pl.Trainer(strategy="fsdp", logger=False).strategy, pl.strategies.FSDPStrategy)


def test_one_rank_fit_shards_and_writes_the_same_checkpoint_as_a_single_device(tmp_path: Path) -> None:
    trainer, model, fsdp = _fit(tmp_path / "fsdp", "fsdp", 2)
    assert isinstance(trainer.strategy, FSDPStrategy)
    assert model.seen == {"configure_model_calls": 1, "param_type": "DTensor"}
    _, plain_model, plain = _fit(tmp_path / "plain", "auto", 2)
    assert plain_model.seen["param_type"] == "Parameter"
    assert list(fsdp["state_dict"]) == list(plain["state_dict"])
    for key, value in plain["state_dict"].items():
        assert type(fsdp["state_dict"][key]) is torch.Tensor
        torch.testing.assert_close(fsdp["state_dict"][key], value)
    assert fsdp["optimizer_states"][0]["param_groups"] == plain["optimizer_states"][0]["param_groups"]
    for index, state in plain["optimizer_states"][0]["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(fsdp["optimizer_states"][0]["state"][index][key], value)
    # the same Trainer validates after fit (the shards' group is kept), and the signature survives
    assert trainer.validate(model, [_loader(), _loader()], verbose=False)[1]["val_loss/dataloader_idx_1"] > 0
    assert list(inspect.signature(model.validation_step).parameters) == ["batch", "batch_idx", "dataloader_idx"]


def test_resume_is_exact_and_checkpoints_cross_strategies(tmp_path: Path) -> None:
    _, _, whole = _fit(tmp_path / "whole", "fsdp", 2)
    _fit(tmp_path / "half", "fsdp", 1)
    _, _, resumed = _fit(tmp_path / "resumed", "fsdp", 2, ckpt_path=tmp_path / "half" / "1.ckpt")
    _, _, crossed = _fit(tmp_path / "crossed", "auto", 2, ckpt_path=tmp_path / "half" / "1.ckpt")
    _fit(tmp_path / "plain_half", "auto", 1)
    _, _, back = _fit(tmp_path / "back", "fsdp", 2, ckpt_path=tmp_path / "plain_half" / "1.ckpt")
    for other in (resumed, crossed, back):
        assert other["global_step"] == whole["global_step"] == 8
        for key, value in whole["state_dict"].items():
            torch.testing.assert_close(other["state_dict"][key], value, rtol=0, atol=1e-6)
    for key, value in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key


def test_sync_batchnorm_is_refused(tmp_path: Path) -> None:
    trainer = pl.Trainer(strategy="fsdp", sync_batchnorm=True, logger=False, max_epochs=1,
                         default_root_dir=str(tmp_path), enable_progress_bar=False)  # fmt: skip
    with pytest.raises(MisconfigurationException, match="sync_batchnorm=True\\) with strategy='fsdp'"):
        trainer.fit(Net(), _loader())


@pytest.mark.parametrize("options", [
    {"sharding_strategy": "HYBRID_SHARD"}, {"sharding_strategy": "SHARD_GRAD_OP"}, {"cpu_offload": True},
    {"auto_wrap_policy": {nn.Linear}}, {"activation_checkpointing_policy": {nn.Linear}},
    {"activation_checkpointing_policy": {nn.Linear}, "auto_wrap_policy": {nn.Linear}},
])  # fmt: skip
def test_fsdp_options_train_like_a_single_device(tmp_path: Path, options: dict[str, Any]) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    strategy = FSDPStrategy(**options)
    _, model, sharded = _fit(tmp_path / "fsdp", strategy, 1)
    wrapped = [type(m) for m in model.modules() if isinstance(m, CheckpointWrapper)]
    assert len(wrapped) == (2 if "activation_checkpointing_policy" in options else 0)  # both Linear layers
    mesh = strategy.device_mesh()
    assert mesh.ndim == (2 if options.get("sharding_strategy") == "HYBRID_SHARD" else 1)
    _, _, plain = _fit(tmp_path / "plain", "auto", 1)
    assert list(sharded["state_dict"]) == list(plain["state_dict"])  # no wrapper prefixes in the keys
    for key, value in plain["state_dict"].items():
        torch.testing.assert_close(sharded["state_dict"][key], value)


def test_fsdp1_mixed_precision_casts_inputs_and_keeps_fp32_checkpoints(tmp_path: Path) -> None:
    from torch.distributed.fsdp import MixedPrecision

    policy = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.bfloat16)
    _, _, sharded = _fit(tmp_path / "bf16", FSDPStrategy(mixed_precision=policy), 1)
    _, _, plain = _fit(tmp_path / "plain", "auto", 1)
    for key, value in plain["state_dict"].items():
        assert sharded["state_dict"][key].dtype == torch.float32
        torch.testing.assert_close(sharded["state_dict"][key], value, rtol=0, atol=0.05)  # bf16 forward


def test_device_mesh_that_does_not_fit_the_run_is_explained(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match=r"device_mesh=\(2, 1\)\) does not fit this run's 1 rank"):
        _fit(tmp_path, FSDPStrategy(device_mesh=(2, 1)), 1)
