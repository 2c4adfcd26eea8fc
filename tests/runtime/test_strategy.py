"""Strategy seam: the single-device strategy, accelerator choice and errors."""

from __future__ import annotations

import pytest
import torch

from fulmen.errors import MisconfigurationException
from fulmen.runtime.ranks import RankInfo
from fulmen.runtime.strategy import LightningModuleWrapper, SingleDeviceStrategy, Strategy, select_strategy


def test_single_process_gets_a_single_device_strategy_with_identity_collectives() -> None:
    strategy = select_strategy("cpu", "auto", "auto", 1, rank_info=RankInfo())
    assert isinstance(strategy, SingleDeviceStrategy)
    assert strategy.root_device == torch.device("cpu")
    assert (strategy.global_rank, strategy.world_size, strategy.is_global_zero) == (0, 1, True)
    t = torch.tensor([1.0, 2.0])
    assert strategy.reduce(t, "sum") is t and strategy.all_gather(t) is t
    assert strategy.broadcast({"a": 1}) == {"a": 1}
    assert strategy.reduce_boolean_decision(True) is True
    strategy.barrier("x")
    module = torch.nn.Linear(2, 2)
    assert strategy.setup_module(module) is module


def test_strategy_is_abstract() -> None:
    with pytest.raises(TypeError):
        Strategy(RankInfo(), torch.device("cpu"))  # type: ignore[abstract]


def test_unknown_accelerator_and_strategy_name_the_choices() -> None:
    with pytest.raises(MisconfigurationException, match="Did you mean 'cpu'"):
        select_strategy("cpux", rank_info=RankInfo())
    with pytest.raises(MisconfigurationException, match="Did you mean 'ddp'"):
        select_strategy("cpu", "dpp", rank_info=RankInfo())


def test_strategies_lightning_has_and_fulmen_does_not_name_the_alternatives() -> None:
    with pytest.raises(MisconfigurationException, match=r"strategy='deepspeed'\) is not a known strategy(.|\n)*HINT: "
                       r"'deepspeed' is a Lightning strategy that fulmen does not implement; use 'fsdp'"):
        select_strategy("cpu", "deepspeed", rank_info=RankInfo())
    with pytest.raises(MisconfigurationException, match=r"HINT: 'ddp_fork' is a Lightning strategy(.|\n)*use 'ddp'"):
        select_strategy("cpu", "ddp_fork", rank_info=RankInfo())
    with pytest.raises(MisconfigurationException, match=r"'fsdp'(.|\n)*HINT: pass one of the names above"):
        select_strategy("cpu", "sharded_nonsense", rank_info=RankInfo())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_without_cuda_is_an_error_with_a_hint() -> None:
    with pytest.raises(MisconfigurationException, match="HINT: use accelerator='cpu'"):
        select_strategy("gpu", rank_info=RankInfo())


def test_module_wrapper_routes_forward_to_the_step_being_run() -> None:
    class Steps(torch.nn.Module):
        def training_step(self, batch, batch_idx):
            return ("train", batch_idx)

        def validation_step(self, batch, batch_idx):
            return ("val", batch_idx)

    wrapper = LightningModuleWrapper(Steps())
    assert wrapper(None, 3) == ("train", 3)
    wrapper.step_name = "validation_step"
    assert wrapper(None, 4) == ("val", 4)


def test_trainer_accelerator_names_the_device_kind() -> None:
    import fulmen as pl
    from fulmen.runtime.trainer_accelerator import CPUAccelerator, CUDAAccelerator

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)  # fmt: skip
    assert isinstance(trainer.accelerator, CPUAccelerator) and not isinstance(trainer.accelerator, CUDAAccelerator)
    assert CPUAccelerator.is_available()
