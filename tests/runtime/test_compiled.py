"""``trainer.fit(torch.compile(model))``: the original module runs, its steps go through dynamo.

Fast tests use a counting backend (dynamo's "eager" backend that also counts the graphs it is
given) or "aot_eager"; the one test on inductor, the default backend, is marked slow.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.runtime.compiled import from_compiled, to_uncompiled
from tests.core.models import TRAINER_QUIET, regression_data


class CountingBackend:
    """dynamo's eager backend that counts the graphs it compiles (0: nothing went through dynamo)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: Any) -> Any:
        self.graphs += 1
        return graph_module.forward


def failing_backend(graph_module: torch.fx.GraphModule, example_inputs: Any) -> Any:
    raise RuntimeError("this backend cannot compile anything")


class Regressor(pl.LightningModule):
    def __init__(self, hidden: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.save_hyperparameters()
        drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), drop, nn.Linear(hidden, 1))
        self.losses: list[float] = []
        self.hooks_seen: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def on_train_start(self) -> None:
        self.hooks_seen.append("on_train_start")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class RecordLosses(pl.Callback):
    """The training losses, in ``pl_module.losses`` (a callback: it runs before one that stops the run)."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        pl_module.losses.append(outputs["loss"].item())


def _loader() -> DataLoader:
    return DataLoader(regression_data(48), batch_size=8, shuffle=True)  # 6 batches, global-RNG shuffle


def _trainer(**kwargs: Any) -> pl.Trainer:
    callbacks = [RecordLosses(), *kwargs.pop("callbacks", [])]
    return pl.Trainer(**{"max_epochs": 2, "limit_val_batches": 2, **TRAINER_QUIET, **kwargs}, callbacks=callbacks)


def test_fit_runs_the_original_module_with_its_steps_compiled() -> None:
    torch.manual_seed(0)
    model = Regressor()
    backend = CountingBackend()
    trainer = _trainer()
    trainer.fit(torch.compile(model, backend=backend), _loader(), _loader())

    assert trainer.lightning_module is model and trainer.model is model
    assert model.hooks_seen == ["on_train_start"]  # hooks ran on the original
    assert backend.graphs > 0
    # the steps the module defines are compiled; the ones it does not define stay undefined
    assert {"forward", "training_step", "validation_step"} <= set(vars(model))
    assert "test_step" not in vars(model) and "predict_step" not in vars(model)
    assert set(trainer.callback_metrics) == {"train_loss_step", "train_loss_epoch", "train_loss", "val_loss"}
    assert trainer.global_step == 12


def test_compiled_training_equals_eager_training() -> None:
    torch.manual_seed(0)
    eager = Regressor()
    _trainer().fit(eager, _loader())
    torch.manual_seed(0)
    compiled = Regressor()
    _trainer().fit(torch.compile(compiled, backend="eager"), _loader())

    assert compiled.losses == eager.losses
    for key, value in eager.state_dict().items():
        assert torch.equal(value, compiled.state_dict()[key]), key


def test_self_log_in_a_compiled_step_is_a_graph_break_not_a_recompile_per_step() -> None:
    """Traced, ``self.log`` adds graphs of the Trainer's bookkeeping, guarded on its Python state."""
    torch.manual_seed(0)
    backend = CountingBackend()
    counts: list[int] = []

    class CountPerEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            counts.append(backend.graphs)

    trainer = _trainer(max_epochs=3, callbacks=[CountPerEpoch()])
    trainer.fit(torch.compile(Regressor(), backend=backend), _loader(), _loader())
    # one graph per compiled step (training_step's and validation_step's, each up to its self.log)
    assert counts == [2, 2, 2]


def test_checkpoint_holds_the_original_keys_and_loads_into_an_eager_module(tmp_path) -> None:
    torch.manual_seed(0)
    model = Regressor(hidden=12)
    trainer = _trainer(max_epochs=1)
    trainer.fit(torch.compile(model, backend="aot_eager"), _loader())
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)
    assert sorted(checkpoint["state_dict"]) == sorted(Regressor(hidden=12).state_dict())
    loaded = Regressor.load_from_checkpoint(path)
    assert loaded.hparams.hidden == 12 and loaded._compiler_ctx is None and "forward" not in vars(loaded)
    loaded.eval()
    model.eval()
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), to_uncompiled(model)(x))


class SaveAndStop(pl.Callback):
    def __init__(self, path: Any, at_step: int) -> None:
        self.path, self.at_step = path, at_step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.at_step:
            trainer.save_checkpoint(self.path)
            raise KeyboardInterrupt  # as abrupt as a kill: nothing after the save runs


def test_a_compiled_run_resumes_exactly(tmp_path) -> None:
    def fit(model: Regressor, **kwargs: Any) -> pl.Trainer:
        trainer = _trainer(max_epochs=3, callbacks=kwargs.pop("callbacks", []))
        trainer.fit(torch.compile(model, backend="aot_eager"), _loader(), **kwargs)
        return trainer

    torch.manual_seed(0)
    full = Regressor()
    fit(full)
    torch.manual_seed(0)
    first = Regressor()
    path = tmp_path / "mid.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(first, callbacks=[SaveAndStop(path, at_step=8)])  # epoch 1, batch 2 of 6
    torch.manual_seed(1234)  # a new process: other RNG, other initial weights
    resumed = Regressor()
    trainer = fit(resumed, ckpt_path=path)

    assert trainer.global_step == 18
    assert first.losses + resumed.losses == full.losses
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_module_dynamo_cannot_compile_runs_eagerly_after_one_warning() -> None:
    torch.manual_seed(0)
    eager = Regressor()
    _trainer().fit(eager, _loader(), _loader())
    torch.manual_seed(0)
    model = Regressor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer().fit(torch.compile(model, backend=failing_backend), _loader(), _loader())

    fallbacks = [w for w in caught if "torch.compile could not compile" in str(w.message)]
    assert len(fallbacks) == 1, [str(w.message) for w in fallbacks]
    message = str(fallbacks[0].message)
    assert fallbacks[0].category is RuntimeWarning
    # names the method, the error and its cause, and what happens now
    assert "Regressor.validation_step" in message  # the sanity check's step is the first compiled call
    assert "BackendCompilerFailed" in message and "this backend cannot compile anything" in message
    assert "runs eagerly" in message and "HINT" in message
    assert model.losses == eager.losses  # the whole run went the eager way, exactly


def test_fullgraph_with_self_log_in_a_step_falls_back_with_a_hint_about_fullgraph() -> None:
    """self.log is a graph break on purpose; fullgraph=True forbids one: the warning says so."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _trainer(max_epochs=1)
        trainer.fit(torch.compile(Regressor(), backend="eager", fullgraph=True), _loader(), _loader())

    fallbacks = [str(w.message) for w in caught if "torch.compile could not compile" in str(w.message)]
    assert len(fallbacks) == 1
    assert "Unsupported" in fallbacks[0] and "test_compiled.py" in fallbacks[0]  # where dynamo stopped
    assert "fullgraph=True" in fallbacks[0] and "on_train_batch_end" in fallbacks[0]
    assert trainer.global_step == 6 and "val_loss" in trainer.callback_metrics


def test_an_error_of_the_users_step_is_raised_as_is_not_taken_for_a_compile_failure() -> None:
    class Broken(Regressor):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            raise ValueError("the user's own bug")

    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError, match="the user's own bug"):
        warnings.simplefilter("always")
        _trainer().fit(torch.compile(Broken(), backend="eager"), _loader())
    assert not [w for w in caught if "torch.compile could not compile" in str(w.message)]


def test_a_compiled_module_that_is_not_a_lightning_module_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="compiled Sequential") as error:
        _trainer().fit(torch.compile(nn.Sequential(nn.Linear(8, 1)), backend="eager"), _loader())
    assert "HINT" in str(error.value) and "LightningModule" in str(error.value)


def test_the_same_compiled_module_fits_then_tests_and_to_uncompiled_restores_it() -> None:
    class WithTest(Regressor):
        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("test_loss", nn.functional.mse_loss(self(x), y))

    torch.manual_seed(0)
    model = WithTest()
    compiled = torch.compile(model, backend="eager")
    trainer = _trainer(max_epochs=1)
    trainer.fit(compiled, _loader())
    context = model._compiler_ctx
    trainer.test(compiled, _loader())
    assert model._compiler_ctx is context  # unwrapped once: not compiled on top of itself
    assert "test_loss" in trainer.callback_metrics

    assert to_uncompiled(compiled) is model
    assert model._compiler_ctx is None
    assert not {"forward", "training_step", "test_step", "log"} & set(vars(model))
    assert from_compiled(compiled) is model and model._compiler_ctx is not None


def test_a_step_assigned_on_the_instance_is_compiled_and_restored_by_to_uncompiled() -> None:
    model = Regressor()
    seen: list[int] = []

    def test_step(batch: Any, batch_idx: int) -> None:
        seen.append(batch_idx)

    model.test_step = test_step
    trainer = _trainer()
    trainer.test(torch.compile(model, backend="eager"), _loader())
    assert seen == list(range(6)) and model.test_step is not test_step
    assert to_uncompiled(model).test_step is test_step


def test_a_compiled_manual_optimization_step_trains() -> None:
    class Manual(Regressor):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            opt = self.optimizers()
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            self.log("train_loss", loss)
            return loss

    torch.manual_seed(0)
    eager = Manual()
    _trainer().fit(eager, _loader())
    torch.manual_seed(0)
    compiled = Manual()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer().fit(torch.compile(compiled, backend="eager"), _loader())
    assert not [w for w in caught if "torch.compile could not compile" in str(w.message)]
    # dynamo traces opt.step() too and runs Adam its own way: last-digit differences
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-5)


@pytest.mark.slow
def test_inductor_the_default_backend_trains_like_eager() -> None:
    torch.manual_seed(0)
    eager = Regressor(dropout=0.0)  # inductor draws its own dropout masks
    _trainer(max_epochs=1).fit(eager, _loader())
    torch.manual_seed(0)
    compiled = Regressor(dropout=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer(max_epochs=1).fit(torch.compile(compiled), _loader())
    assert not [w for w in caught if "torch.compile could not compile" in str(w.message)]
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4)
