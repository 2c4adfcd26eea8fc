"""Truncated BPTT under manual optimization, as Lightning 1.9.5 ran it, and the choice of the
per-batch routines that the fit loop makes once per fit.

A 1.x module with ``automatic_optimization = False`` and ``truncated_bptt_steps = N`` gets each
batch cut by ``tbptt_split_batch`` and ``training_step(split, batch_idx, hiddens)`` once per
split; the module steps its own optimizers (``manual_backward``/``opt.step()``) inside, and the
``hiddens`` it returns reach the next split detached (``None`` at the start of every batch).
Lightning 2 removed ``truncated_bptt_steps``; fulmen warns once with what to write instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulmen.runtime.legacy_optimization import LegacyAutomaticStep, _detach, _hiddens_of, _warn_once, tbptt_steps
from fulmen.runtime.optimization_step import OptimizationStep, loss_from_output


class LegacyManualTbptt:
    """One batch of manual optimization split along time; its outputs are one dict per split
    (without ``hiddens``), the list ``on_train_batch_end`` receives in 1.9.5."""

    def __init__(self, optimization: OptimizationStep, steps: int) -> None:
        self.optimization = optimization
        self.steps = steps
        module = optimization.hooks.lightning_module
        _warn_once(
            module,
            "tbptt_manual",
            f"{type(module).__name__} uses truncated_bptt_steps with manual optimization: Lightning 1.x API, run "
            "as 1.9.5 did. Lightning 2 removed it: split the batch along time in training_step yourself and carry "
            "the detached hidden state from one split to the next.",
        )

    def step(self, batch: Any, batch_idx: int) -> tuple[list[dict[str, Any]], None]:
        optimization = self.optimization
        module = optimization.hooks.lightning_module
        hiddens, outputs = None, []
        for split in module.tbptt_split_batch(batch, self.steps):
            with optimization.precision_plugin.forward_context():
                output = self._training_step(split, batch_idx, hiddens)
            loss_from_output(output, automatic=False)
            hiddens = _hiddens_of(output, True)
            outputs.append({k: _detach(v) for k, v in output.items() if k != "hiddens"})
        return outputs, None

    def _training_step(self, split: Any, batch_idx: int, hiddens: Any) -> Any:
        optimization = self.optimization
        if optimization.module_wrapper is not None:  # several ranks: through DDP's forward
            optimization.module_wrapper.step_name = "training_step"
            output = optimization.model(split, batch_idx, hiddens)
        else:
            output = optimization.hooks.lightning_module.training_step(split, batch_idx, hiddens)
        step_end = getattr(optimization.hooks.lightning_module, "training_step_end", None)
        return step_end(output) if step_end is not None else output


def batch_routines(optimization: OptimizationStep) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The fit's (automatic, manual) per-batch routines, chosen once at fit start: the 1.x ones
    (several optimizers, truncated BPTT) only when the module needs them, so ordinary training
    keeps its own path."""
    automatic, manual = optimization.automatic_step, optimization.manual_step
    if LegacyAutomaticStep.wanted(optimization):
        automatic = LegacyAutomaticStep(optimization, optimization.frequencies).step
    module = optimization.hooks.lightning_module
    steps = tbptt_steps(module, getattr(optimization.hooks.trainer, "truncated_bptt_steps", 0))
    if not module.automatic_optimization and steps > 0:
        manual = LegacyManualTbptt(optimization, steps).step
    return automatic, manual
