"""OptimizationStep's direct step: without a GradScaler, ``optimizer.step(closure)`` is called
directly (no LightningOptimizer / precision layers per step), with the very same hook order,
the closure still inside ``optimizer.step`` (LBFGS evaluates it several times), and the same
weights as the layered path."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import fulmen as pl
from fulmen.runtime.optimization_step import OptimizationStep
from tests.core.models import TRAINER_QUIET, BoringModel

_STEP_HOOKS = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")


class Recorder(pl.Callback):
    """Records the step hooks; the optimizer records when its step starts and ends."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.events.append(f"batch_start({batch_idx})")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.events.append(f"batch_end({batch_idx}, loss={float(outputs['loss']):.6f})")


def _record(name: str, events: list[str]) -> Any:
    def hook(self: Any, trainer: Any, pl_module: Any, *args: Any) -> None:
        events.append(name)

    return hook


def _fit(optimizer: str, direct: bool, clip: float | None = None) -> tuple[list[str], dict[str, torch.Tensor], int]:
    events: list[str] = []
    namespace = {name: _record(name, events) for name in _STEP_HOOKS}
    callback = type("StepRecorder", (Recorder,), namespace)(events)

    class Model(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            events.append("training_step")
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self) -> Any:
            base = torch.optim.LBFGS if optimizer == "lbfgs" else torch.optim.SGD
            kwargs = {"max_iter": 3} if optimizer == "lbfgs" else {}

            class Recording(base):  # type: ignore[misc, valid-type]
                def step(self, closure: Any = None) -> Any:
                    events.append("optimizer.step in")
                    out = super().step(closure)
                    events.append("optimizer.step out")
                    return out

            return Recording(self.layer.parameters(), lr=0.1, **kwargs)

    torch.manual_seed(0)
    model = Model()
    trainer = pl.Trainer(max_steps=3, limit_val_batches=0, gradient_clip_val=clip, callbacks=[callback], **TRAINER_QUIET)
    trainer.optimization._direct_step = direct
    layered_calls = []
    original = OptimizationStep.optimizer_step

    def counting(self: OptimizationStep, *args: Any) -> Any:
        layered_calls.append(1)
        return original(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OptimizationStep, "optimizer_step", counting)
        trainer.fit(model)
    assert trainer.global_step == 3
    return events, {k: v.clone() for k, v in model.state_dict().items()}, len(layered_calls)


@pytest.mark.parametrize("optimizer, clip", [("sgd", None), ("sgd", 0.01), ("lbfgs", None)])
def test_the_direct_step_calls_the_hooks_and_steps_exactly_as_the_layered_path(optimizer: str, clip: Any) -> None:
    events, weights, layered = _fit(optimizer, direct=True, clip=clip)
    reference_events, reference_weights, reference_layered = _fit(optimizer, direct=False, clip=clip)
    assert layered == 0 and reference_layered == 3  # the direct path skips the wrapper layers
    assert events == reference_events
    for key, value in reference_weights.items():
        assert torch.equal(weights[key], value), key
    # the closure (forward, hooks, backward, on_before_optimizer_step) runs inside optimizer.step
    first = events[events.index("optimizer.step in"):events.index("optimizer.step out") + 1]
    closure_calls = first.count("training_step")
    assert closure_calls == (1 if optimizer == "sgd" else first.count("on_before_optimizer_step"))
    if optimizer == "lbfgs":
        assert closure_calls > 1  # LBFGS evaluated it several times, each with its hooks
    assert first[1:6] == ["training_step", *_STEP_HOOKS]


def test_a_grad_scaler_keeps_the_precision_step() -> None:
    class Scaling:
        precision = "16-mixed"
        is_mixed = True
        scaler = object()

    step = OptimizationStep(Scaling(), None, None, None, None, None)  # type: ignore[arg-type]
    assert step._direct_step is False and step._scales_loss and step._autocast
