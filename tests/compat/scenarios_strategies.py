"""Compatibility scenario about ``pl.strategies`` and ``strategy="fsdp"`` on a CPU-only machine.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning. Lightning 2.6 refuses FSDP without CUDA, so what can be recorded
here is: which names ``pl.strategies`` has, which strategy strings a Trainer refuses, which
``FSDPStrategy(...)`` arguments are refused at construction, whether a CPU fit with
``strategy="fsdp"`` runs, and the checkpoint a one-process fit writes (keys, shapes, optimizer
state layout) for "fsdp" when it runs and for a single-device fit, which an FSDP full-state
checkpoint must equal. fulmen runs FSDP on CPU on purpose (gloo): see the deliberate
differences in test_lightning_parity.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader

from tests.compat.models import base_module, dataset, trainer_kwargs

# Lightning 2.6's pytorch_lightning.strategies.__all__
STRATEGY_NAMES = ["DDPStrategy", "DeepSpeedStrategy", "FSDPStrategy", "ModelParallelStrategy", "ParallelStrategy",
                  "SingleDeviceStrategy", "Strategy"]  # fmt: skip
TRAINER_STRATEGIES = ["deepspeed", "fsdp_nonsense", "ddp", "fsdp"]
# label -> FSDPStrategy keyword arguments
FSDP_ARGUMENTS: dict[str, dict[str, Any]] = {
    "sharding_strategy='bogus'": {"sharding_strategy": "bogus"},
    "sharding_strategy='SHARD_GRAD_OP'": {"sharding_strategy": "SHARD_GRAD_OP"},
    "sharding_strategy='NO_SHARD'": {"sharding_strategy": "NO_SHARD"},
    "state_dict_type='full'": {"state_dict_type": "full"},
    "state_dict_type='sharded'": {"state_dict_type": "sharded"},
    "cpu_offload=True": {"cpu_offload": True},
    "auto_wrap_policy={nn.Linear}": {"auto_wrap_policy": {torch.nn.Linear}},
    "activation_checkpointing_policy={nn.Linear}": {"activation_checkpointing_policy": {torch.nn.Linear}},
    "activation_checkpointing=nn.Linear": {"activation_checkpointing": torch.nn.Linear},
}


def _refused(build: Callable[[], Any]) -> bool:
    try:
        build()
    except Exception:  # noqa: BLE001 - refusing is what is observed; the messages differ on purpose
        return True
    return False


def _checkpoint_layout(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    optimizer = checkpoint["optimizer_states"][0]
    return {
        "state_dict": {key: list(value.shape) for key, value in checkpoint["state_dict"].items()},
        "state_dict_types": sorted({type(value).__name__ for value in checkpoint["state_dict"].values()}),
        "optimizer_params": [group["params"] for group in optimizer["param_groups"]],
        "optimizer_state": {str(index): {key: list(value.shape) for key, value in state.items()}
                            for index, state in optimizer["state"].items()},  # fmt: skip
        "global_step": checkpoint["global_step"],
    }


def _fit_layout(pl: ModuleType, root: Path, strategy: str) -> dict[str, Any] | None:
    """The checkpoint layout after a 2-step fit with ``strategy``; None when the Trainer refuses it."""
    try:
        trainer = pl.Trainer(**trainer_kwargs(str(root), strategy=strategy, accelerator="cpu", devices=1,
                                              max_epochs=1, limit_train_batches=2, limit_val_batches=0))  # fmt: skip
    except Exception:  # noqa: BLE001 - Lightning refuses FSDP on CPU; that is what is recorded
        return None
    class WithAdam(base_module(pl)):  # type: ignore[misc]
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=0.1)  # a per-parameter state to lay out

    model = WithAdam()
    trainer.fit(model, DataLoader(dataset(8), batch_size=2))
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # a one-rank group FSDP kept: not left for other scenarios
    return _checkpoint_layout(path)


def strategies_surface(pl: ModuleType, root: Path) -> dict[str, Any]:
    """pl.strategies names, refused strategy strings and FSDP arguments, and the FSDP CPU fit."""
    strategies = pl.strategies
    present = {name: hasattr(strategies, name) for name in STRATEGY_NAMES}
    trainer_refused = {
        name: _refused(lambda: pl.Trainer(**trainer_kwargs(str(root / "flags"), strategy=name, accelerator="cpu")))
        for name in TRAINER_STRATEGIES
    }
    fsdp_refused = {label: _refused(lambda: strategies.FSDPStrategy(**kwargs)) for label, kwargs in FSDP_ARGUMENTS.items()}
    fsdp = strategies.FSDPStrategy()
    hierarchy = {"is_parallel": isinstance(fsdp, strategies.ParallelStrategy), "is_strategy": isinstance(fsdp, strategies.Strategy),
                 "ddp_is_parallel": issubclass(strategies.DDPStrategy, strategies.ParallelStrategy),
                 "strategy_name": getattr(type(fsdp), "strategy_name", None)}  # fmt: skip
    fsdp_layout = _fit_layout(pl, root / "fsdp", "fsdp")
    return {
        "names": present,
        "trainer_strategy_refused": trainer_refused,
        "fsdp_arguments_refused": fsdp_refused,
        "hierarchy": hierarchy,
        "single_device_checkpoint": _fit_layout(pl, root / "single", "auto"),
        "fsdp_cpu_fit": {"checkpoint": fsdp_layout, "runs": fsdp_layout is not None},
    }


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {"strategies_surface": strategies_surface}
