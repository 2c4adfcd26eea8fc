"""The summary's FLOP counter: same counts as torch's public counter, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fulmen.utilities.flops import flop_counter


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_counts_match_torch_flop_counter() -> None:
    model, x = _model(), torch.randn(3, 3, 8, 8)
    ours, reference = flop_counter(depth=2), FlopCounterMode(display=False, depth=2)
    with torch.no_grad():
        with ours:
            model(x)
        with reference:
            model(x)
    assert ours.get_total_flops() == reference.get_total_flops() == 25056
    assert ours.get_flop_counts() == reference.get_flop_counts()


def test_summary_forward_does_not_import_dynamo(subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys, torch\n"
        "from torch import nn\n"
        "from fulmen.utilities.model_summary import ModelSummary\n"
        "m = nn.Sequential(nn.Linear(4, 2)); m.example_input_array = torch.zeros(3, 4)\n"
        "assert ModelSummary(m).total_flops == 48\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
