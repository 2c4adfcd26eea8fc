"""Precision: autocast, loss scaling and parameter dtype for each ``Trainer(precision=...)`` value."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from fulmen.errors import MisconfigurationException

_ALIASES = {
    "32": "32-true", "32-true": "32-true", 32: "32-true",
    "64": "64-true", "64-true": "64-true", 64: "64-true",
    "16": "16-mixed", "16-mixed": "16-mixed", 16: "16-mixed",
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
    "bf16-true": "bf16-true",
}  # fmt: skip
_NULL_CONTEXT = contextlib.nullcontext()  # reusable, so full precision allocates nothing per step
_CHOICES = ["32-true", "64-true", "16-mixed", "bf16-mixed", "bf16-true"]


def normalize_precision(precision: Any) -> str:
    """Lightning's canonical precision name; an unknown value is an error listing the choices.

    None is Lightning's default (and what its configs print): full precision, ``"32-true"``.
    """
    if precision is None:
        return "32-true"
    name = _ALIASES.get(precision if isinstance(precision, int) else str(precision))
    if name is None:
        raise MisconfigurationException(
            f"Trainer(precision={precision!r}) is not supported; expected one of {_CHOICES} (or 32, 64, 16, 'bf16')."
        )
    return name


class PrecisionPlugin:
    """Applies one precision setting: module dtype, autocast around steps, GradScaler for fp16."""

    def __init__(self, precision: Any, device: torch.device) -> None:
        self.precision = normalize_precision(precision)
        self.device = device
        if self.precision == "16-mixed" and device.type != "cuda":
            raise MisconfigurationException(
                f"Trainer(precision='16-mixed') needs a CUDA device, but training runs on {device.type!r}.\n"
                "HINT: use precision='bf16-mixed' on CPU, or accelerator='gpu' on a machine with CUDA."
            )
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler("cuda") if self.precision == "16-mixed" else None
        )
        dtypes = {"64-true": torch.float64, "bf16-true": torch.bfloat16}
        self._module_dtype = dtypes.get(self.precision)
        self._autocast_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(self.precision)

    @property
    def is_mixed(self) -> bool:
        return self._autocast_dtype is not None

    def convert_module(self, module: nn.Module) -> nn.Module:
        """The module in the parameter dtype this precision trains in (64/bf16-true change it)."""
        if self._module_dtype is not None:
            return module.to(dtype=self._module_dtype)
        return module

    def convert_input(self, batch: Any) -> Any:
        """Floating tensors of ``batch`` cast to the parameter dtype (only for 64-true / bf16-true)."""
        if self._module_dtype is None:
            return batch
        return _cast_floats(batch, self._module_dtype)

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast for the mixed precisions, nothing otherwise."""
        if self._autocast_dtype is None:
            return _NULL_CONTEXT
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def pre_backward(self, loss: Tensor) -> Tensor:
        """The loss to call backward on (scaled for fp16)."""
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale fp16 gradients in place (before clipping or inspecting them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def optimizer_step(
        self,
        optimizer: torch.optim.Optimizer,
        closure: Callable[[], Any] | None,
        after_closure: Callable[[], None],
        *,
        automatic: bool = True,
    ) -> Any:
        """Run ``closure`` (forward + backward), then ``after_closure`` (hooks, clipping), then step.

        With automatic optimization a closure returning None means training_step skipped the
        batch: the fp16 path then neither unscales nor steps (nothing was scaled).
        """
        if self.scaler is None:

            def wrapped() -> Any:
                result = closure() if closure is not None else None
                after_closure()
                return result

            return optimizer.step(closure=wrapped)
        result = closure() if closure is not None else None
        skipped = automatic and result is None
        if not skipped:
            self.scaler.unscale_(optimizer)
        after_closure()
        if not skipped:
            self.scaler.step(optimizer)
            self.scaler.update()
        return result

    def state_dict(self) -> dict[str, Any]:
        """GradScaler state (empty for precisions without one)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.scaler is not None and state_dict:
            self.scaler.load_state_dict(state_dict)


def _cast_floats(data: Any, dtype: torch.dtype) -> Any:
    if isinstance(data, Tensor):
        return data.to(dtype) if data.is_floating_point() else data
    if isinstance(data, (list, tuple)):
        cast = [_cast_floats(d, dtype) for d in data]
        return type(data)(*cast) if hasattr(data, "_fields") else type(data)(cast)
    if isinstance(data, dict):
        return type(data)((k, _cast_floats(v, dtype)) for k, v in data.items())
    return data
