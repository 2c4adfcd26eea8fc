"""LightningModule API outside the loops: hparams, freeze, export, checkpoint loading, properties."""

from __future__ import annotations

import argparse

import pytest
import torch

import fulmen as pl
from tests.core.models import TRAINER_QUIET, BoringModel


class WithHparams(BoringModel):
    def __init__(self, lr: float = 0.1, hidden: int = 4, *, tag: str = "x", net: object = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])


def test_save_hyperparameters_collects_init_arguments_with_attribute_and_item_access() -> None:
    model = WithHparams(0.5, tag="y", net=object())
    assert dict(model.hparams) == {"lr": 0.5, "hidden": 4, "tag": "y"}
    assert model.hparams.lr == 0.5 and model.hparams["hidden"] == 4
    model.hparams.lr = 0.2
    assert model.hparams_initial.lr == 0.5


def test_save_hyperparameters_from_a_dict_namespace_or_names() -> None:
    class FromDict(BoringModel):
        def __init__(self, config):
            super().__init__()
            self.save_hyperparameters(config)

    class ByName(BoringModel):
        def __init__(self, a, b):
            super().__init__()
            self.save_hyperparameters("a")

    assert dict(FromDict({"x": 1}).hparams) == {"x": 1}
    assert dict(FromDict(argparse.Namespace(y=2)).hparams) == {"y": 2}
    assert dict(ByName(1, 2).hparams) == {"a": 1}
    with pytest.raises(AttributeError, match="keys"):
        _ = ByName(1, 2).hparams.b


def test_datamodule_save_hyperparameters() -> None:
    class DM(pl.LightningDataModule):
        def __init__(self, batch_size=8):
            super().__init__()
            self.save_hyperparameters()

    assert DM(16).hparams.batch_size == 16


def test_freeze_and_unfreeze() -> None:
    model = BoringModel()
    model.freeze()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_to_torchscript_script_and_trace(tmp_path) -> None:
    model = BoringModel()
    x = torch.randn(3, 32)
    scripted = model.to_torchscript(tmp_path / "m.pt")
    assert torch.allclose(scripted(x), model(x))
    assert torch.allclose(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x))
    model.example_input_array = x
    traced = model.to_torchscript(method="trace")
    assert torch.allclose(traced(x), model(x))
    assert model.training  # export does not leave the model in eval mode
    with pytest.raises(ValueError, match="'script' or 'trace'"):
        model.to_torchscript(method="compile")


def test_to_onnx_writes_a_loadable_model(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    model = BoringModel()
    path = tmp_path / "m.onnx"
    model.to_onnx(path, torch.randn(1, 32))
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded)
    with pytest.raises(ValueError, match="example_input_array"):
        BoringModel().to_onnx(tmp_path / "n.onnx")


def test_load_from_checkpoint_rebuilds_with_hparams_and_weights(tmp_path) -> None:
    model = WithHparams(lr=0.3, hidden=7)
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, **TRAINER_QUIET)
    trainer.fit(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = WithHparams.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.hidden == 7
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    overridden = WithHparams.load_from_checkpoint(tmp_path / "m.ckpt", hidden=9)
    assert overridden.hparams.hidden == 9


def test_properties_and_logging_outside_a_trainer() -> None:
    model = BoringModel()
    assert (model.current_epoch, model.global_step, model.global_rank, model.local_rank) == (0, 0, 0, 0)
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.logger is None and model.loggers == []
    with pytest.warns(UserWarning, match="outside of a running"):
        model.log("x", 1.0)
    with pytest.raises(RuntimeError, match="not attached to a Trainer"):
        model.optimizers()
    t = torch.ones(2)
    assert model.all_gather(t) is t


def test_optimizers_and_all_gather_inside_a_run() -> None:
    seen = {}

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            seen["opt"] = self.optimizers()
            seen["raw"] = self.optimizers(use_pl_optimizer=False)
            seen["sched"] = self.lr_schedulers()
            seen["gathered"] = self.all_gather({"a": torch.ones(2)})
            return super().training_step(batch, batch_idx)

    pl.Trainer(max_steps=1, limit_val_batches=0, **TRAINER_QUIET).fit(Model())
    assert isinstance(seen["opt"], torch.optim.SGD) and type(seen["raw"]) is torch.optim.SGD
    assert isinstance(seen["sched"], torch.optim.lr_scheduler.StepLR)
    assert torch.equal(seen["gathered"]["a"], torch.ones(2))


def test_pickling_and_deepcopy_leave_the_trainer_behind() -> None:
    import copy
    import pickle

    model = BoringModel()
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, **TRAINER_QUIET)
    trainer.fit(model)
    assert model.trainer is trainer
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone._trainer is None
        assert torch.equal(clone.layer.weight, model.layer.weight)
    assert model.trainer is trainer


def test_trainer_init_module_creates_parameters_in_the_training_dtype() -> None:
    trainer = pl.Trainer(precision="64-true", **TRAINER_QUIET)
    with trainer.init_module():
        layer = torch.nn.Linear(2, 2)
    assert layer.weight.dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32


def test_remove_ignored_hparams_drops_what_a_base_class_saved() -> None:
    class Base(pl.LightningModule):
        def __init__(self, lr: float = 0.1, backbone: str = "big") -> None:
            super().__init__()
            self.save_hyperparameters()

    class Head(Base):
        def __init__(self) -> None:
            super().__init__(lr=0.2)
            self.remove_ignored_hparams(["backbone", "not_saved"])

    model = Head()
    assert dict(model.hparams) == {"lr": 0.2}
    assert dict(model.hparams_initial) == {"lr": 0.2, "backbone": "big"}  # what loggers saw, as in Lightning
    assert (model.CHECKPOINT_HYPER_PARAMS_KEY, pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_NAME) == (
        "hyper_parameters", "hparams_name",
    )  # fmt: skip
