"""Model export for LightningModule.to_torchscript / to_onnx (kept out of the module class)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fulmen.core.hooks import move_data_to_device


@torch.no_grad()
def to_torchscript(
    module: Any, file_path: str | Path | None, method: str, example_inputs: Any, **kwargs: Any
) -> Any:
    """``torch.jit.script`` or ``trace`` of ``module`` in eval mode; saved when ``file_path`` is given."""
    if method not in ("script", "trace"):
        raise ValueError(f"to_torchscript(method={method!r}): expected 'script' or 'trace'.")
    inputs = example_inputs if example_inputs is not None else module.example_input_array
    if method == "trace" and inputs is None:
        raise ValueError(
            "to_torchscript(method='trace') needs an input to trace with.\n"
            "HINT: pass example_inputs=... or set self.example_input_array."
        )
    mode = module.training
    module._jit_is_scripting = True  # the module's trainer property must not raise while TorchScript reads it
    try:
        if method == "script":
            scripted = torch.jit.script(module.eval(), **kwargs)
        else:
            inputs = move_data_to_device(inputs, module.device)
            scripted = torch.jit.trace(func=module.eval(), example_inputs=inputs, **kwargs)
    finally:
        module._jit_is_scripting = False
        module.train(mode)
    if file_path is not None:
        torch.jit.save(scripted, str(file_path))
    return scripted


@torch.no_grad()
def to_onnx(module: Any, file_path: str | Path, input_sample: Any, **kwargs: Any) -> Any:
    """Export ``module`` to ONNX at ``file_path`` with the TorchScript-based exporter (no onnxscript needed)."""
    sample = input_sample if input_sample is not None else module.example_input_array
    if sample is None:
        raise ValueError(
            "to_onnx() needs an input sample to export with.\n"
            "HINT: pass input_sample=... or set self.example_input_array."
        )
    mode = module.training
    sample = move_data_to_device(sample, module.device)
    kwargs.setdefault("dynamo", False)
    try:
        return torch.onnx.export(module.eval(), sample, str(file_path), **kwargs)
    finally:
        module.train(mode)
