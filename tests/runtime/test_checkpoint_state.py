"""Trainer state <-> checkpoint dict, with a small fake trainer exposing the documented accessors."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fulmen.callbacks.early_stopping import EarlyStopping
from fulmen.callbacks.model_checkpoint import ModelCheckpoint
from fulmen.core.module import LightningModule
from fulmen.errors import CheckpointError
from fulmen.runtime import checkpoint as ck
from fulmen.runtime import checkpoint_state as cs
from fulmen.runtime.trainer import Trainer


class Net(LightningModule):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(3, width)
        self.seen: dict[str, Any] = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["module_extra"] = 42

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.seen["module_extra"] = checkpoint.get("module_extra")


class PrecisionStub:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"scale": torch.tensor(1024.0)}

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = state


class LoggerStub:
    def __init__(self, version: int) -> None:
        self.version = version

    def state_dict(self) -> dict[str, Any]:
        return {"name": "lightning_logs", "version": self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.version = state["version"]


# the keys of loops["fit_loop"] in PyTorch Lightning 2.6.6 files
LIGHTNING_FIT_LOOP_KEYS = [
    "state_dict", "epoch_loop.state_dict", "epoch_loop.batch_progress", "epoch_loop.scheduler_progress",
    "epoch_loop.automatic_optimization.state_dict", "epoch_loop.automatic_optimization.optim_progress",
    "epoch_loop.manual_optimization.state_dict", "epoch_loop.manual_optimization.optim_step_progress",
    "epoch_loop.val_loop.state_dict", "epoch_loop.val_loop.batch_progress", "epoch_progress",
]  # fmt: skip


def _trainer(tmp_path: Path, fn: str = "fit", seed: int = 0) -> SimpleNamespace:
    torch.manual_seed(seed)
    module = Net()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    loop = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False).fit_loop
    trainer = SimpleNamespace(
        lightning_module=module,
        optimizers=[optimizer],
        lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler, interval="epoch", name=None)],
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss"), EarlyStopping(monitor="val_loss")],
        loggers=[LoggerStub(version=3)],
        precision_plugin=PrecisionStub(),
        fit_loop=loop,
        datamodule=None,
        state=SimpleNamespace(fn=fn),
        is_global_zero=True,
        ckpt_path=None,
    )
    trainer.current_epoch = 0
    trainer.global_step = 0
    trainer.checkpoint_callback = trainer.callbacks[0]
    trainer.checkpoint_callbacks = [trainer.callbacks[0]]
    return trainer


def _train_a_bit(trainer: SimpleNamespace) -> None:
    module, optimizer = trainer.lightning_module, trainer.optimizers[0]
    for _ in range(3):
        optimizer.zero_grad()
        module.layer(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
    trainer.lr_scheduler_configs[0].scheduler.step()
    trainer.fit_loop.current_epoch, trainer.fit_loop.global_step, trainer.fit_loop.batch_idx = 1, 3, 3
    trainer.current_epoch, trainer.global_step = 1, 3
    trainer.callbacks[1].wait_count = 2
    trainer.callbacks[0].best_model_path = str(Path(trainer.callbacks[0].dirpath) / "epoch=0-step=3.ckpt")


def test_dump_has_lightning_layout_and_loads_with_weights_only(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    _train_a_bit(trainer)
    np.random.seed(3)
    random.seed(3)
    checkpoint = cs.dump_checkpoint(trainer)
    assert {"epoch", "global_step", "fulmen_version", "state_dict", "loops", "callbacks", "optimizer_states",
            "lr_schedulers", "hyper_parameters", "hparams_name", "precision", "loggers"} <= set(checkpoint)  # fmt: skip
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 3)
    assert set(checkpoint["state_dict"]) == {"layer.weight", "layer.bias"}
    assert checkpoint["hyper_parameters"] == {"width": 4} and type(checkpoint["hyper_parameters"]) is dict
    assert checkpoint["module_extra"] == 42
    assert set(checkpoint["callbacks"]) == {trainer.callbacks[0].state_key, trainer.callbacks[1].state_key}
    assert checkpoint["loggers"] == [{"name": "lightning_logs", "version": 3}]
    path = tmp_path / "full.ckpt"
    ck.save_atomic(checkpoint, path)
    loaded = ck.load_checkpoint(path)  # weights_only=True: numpy's RNG state was stored as tensors
    assert sorted(loaded["loops"]) == ["fit_loop", "predict_loop", "test_loop", "validate_loop"]
    assert sorted(loaded["loops"]["fit_loop"]) == sorted(LIGHTNING_FIT_LOOP_KEYS)
    fit_state = cs.decode_arrays(loaded["loops"]["fit_loop"]["state_dict"]["fulmen"])
    assert fit_state["data"]["rng_at_save"]["numpy"][0] == "MT19937"
    np.testing.assert_array_equal(fit_state["data"]["rng_at_save"]["numpy"][1], np.random.get_state()[1])
    assert fit_state["data"]["rng_at_save"]["numpy"][1].dtype == np.uint32


def test_weights_only_dump_skips_training_state(tmp_path: Path) -> None:
    checkpoint = cs.dump_checkpoint(_trainer(tmp_path), weights_only=True)
    assert not {"optimizer_states", "lr_schedulers", "callbacks", "loggers"} & set(checkpoint)
    assert "state_dict" in checkpoint and "loops" in checkpoint


def test_restore_round_trip(tmp_path: Path) -> None:
    source = _trainer(tmp_path, seed=1)
    _train_a_bit(source)
    path = tmp_path / "a.ckpt"
    ck.save_atomic(cs.dump_checkpoint(source), path)
    target = _trainer(tmp_path, seed=2)
    target.logger_versions = None
    cs.restore_checkpoint(target, ck.load_checkpoint(path, map_location="cpu"))
    for a, b in zip(source.lightning_module.parameters(), target.lightning_module.parameters()):
        assert torch.equal(a, b)
    src_opt, dst_opt = source.optimizers[0].state_dict(), target.optimizers[0].state_dict()
    assert dst_opt["state"][0]["step"] == src_opt["state"][0]["step"]
    assert torch.equal(dst_opt["state"][0]["exp_avg"], src_opt["state"][0]["exp_avg"])
    assert target.lr_scheduler_configs[0].scheduler.get_last_lr() == [0.05]
    assert (target.fit_loop.current_epoch, target.fit_loop.global_step, target.fit_loop.batch_idx) == (1, 3, 3)
    assert target.callbacks[1].wait_count == 2
    assert target.callbacks[0].best_model_path.endswith("epoch=0-step=3.ckpt")
    assert target.lightning_module.seen == {"module_extra": 42}
    assert float(target.precision_plugin.state["scale"]) == 1024.0


def test_weights_only_checkpoint_cannot_resume_fit_but_can_test(tmp_path: Path) -> None:
    path = tmp_path / "w.ckpt"
    ck.save_atomic(cs.dump_checkpoint(_trainer(tmp_path), weights_only=True), path)
    fitting = _trainer(tmp_path, seed=5)
    fitting.ckpt_path = str(path)
    with pytest.raises(CheckpointError, match=r"w\.ckpt.*\['optimizer_states', 'lr_schedulers'\].*resume training"):
        cs.restore_checkpoint(fitting, ck.load_checkpoint(path, map_location="cpu"))
    testing = _trainer(tmp_path, fn="test", seed=5)
    cs.restore_checkpoint(testing, ck.load_checkpoint(path, map_location="cpu"))


def test_optimizer_count_mismatch_is_explained(tmp_path: Path) -> None:
    checkpoint = cs.dump_checkpoint(_trainer(tmp_path))
    checkpoint["optimizer_states"].append(checkpoint["optimizer_states"][0])
    with pytest.raises(CheckpointError, match="2 optimizer state.*1 optimizer"):
        cs.restore_checkpoint(_trainer(tmp_path), checkpoint)


def test_callback_state_under_bare_class_name_is_used(tmp_path: Path) -> None:
    checkpoint = cs.dump_checkpoint(_trainer(tmp_path))
    checkpoint["callbacks"] = {"EarlyStopping": {"wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(0.5), "patience": 9}}
    target = _trainer(tmp_path)
    cs.restore_callbacks(target, checkpoint)
    assert target.callbacks[1].patience == 9


def test_encode_decode_arrays_round_trip() -> None:
    data = {"a": (np.arange(5, dtype=np.uint32), 3, 0.5), "b": [np.float64(1.5), np.zeros((2, 2), dtype=np.float32)]}
    back = cs.decode_arrays(cs.encode_arrays(data))
    np.testing.assert_array_equal(back["a"][0], data["a"][0])
    assert back["a"][0].dtype == np.uint32 and isinstance(back["a"], tuple)
    assert back["b"][0] == 1.5 and back["b"][1].dtype == np.float32


def test_callback_state_and_hooks_round_trip(tmp_path: Path) -> None:
    from fulmen.core.callback import Callback

    calls: list[str] = []

    class Counter(Callback):
        def __init__(self, count: int = 0) -> None:
            self.count = count

        @property
        def state_key(self) -> str:
            return self._generate_state_key(name="counter")

        def state_dict(self) -> dict[str, Any]:
            return {"count": self.count}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            calls.append("load_state_dict")
            self.count = state["count"]

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            checkpoint["counter_extra"] = self.count * 10

        def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            calls.append(f"on_load_checkpoint:{checkpoint['counter_extra']}")

    source = _trainer(tmp_path)
    source.callbacks.append(Counter(7))
    checkpoint = cs.dump_checkpoint(source)
    key = source.callbacks[-1].state_key
    assert key.endswith("Counter{'name': 'counter'}") and checkpoint["callbacks"][key] == {"count": 7}
    assert checkpoint["counter_extra"] == 70
    target = _trainer(tmp_path)
    target.callbacks.append(Counter())
    cs.restore_checkpoint(target, checkpoint)
    assert target.callbacks[-1].count == 7
    assert calls == ["on_load_checkpoint:70", "load_state_dict"]  # every hook first, then the states


def test_two_phase_restore_in_lightnings_order(tmp_path: Path) -> None:
    """Module and callbacks before configure_optimizers; optimizer, scheduler and loop after."""
    source = _trainer(tmp_path, seed=1)
    _train_a_bit(source)
    checkpoint = cs.dump_checkpoint(source)
    target = _trainer(tmp_path, seed=2)
    target.loggers[0].version = 9  # a new run would have picked the next version
    cs.restore_modules_and_callbacks(target, checkpoint)
    assert torch.equal(target.lightning_module.layer.weight, source.lightning_module.layer.weight)
    assert target.callbacks[1].wait_count == 2 and target.loggers[0].version == 3
    assert target.optimizers[0].state_dict()["state"] == {}  # not yet: configure_optimizers comes between
    assert target.fit_loop.global_step == 0
    cs.restore_training_state(target, checkpoint)
    assert target.fit_loop.global_step == 3
    assert target.optimizers[0].state_dict()["state"][0]["step"] == source.optimizers[0].state_dict()["state"][0]["step"]
    assert target.lr_scheduler_configs[0].scheduler.get_last_lr() == [0.05]
