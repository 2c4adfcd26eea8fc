"""grad_norm: Lightning's keys and the p-norms of the gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fulmen.utilities import grad_norm


def _module_with_grads() -> nn.Module:
    module = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 1, bias=False))
    module[0].weight.grad = torch.tensor([[3.0, 4.0]])
    module[1].weight.grad = None  # a frozen parameter is left out
    return module


def test_per_parameter_and_total_norms_under_lightnings_keys() -> None:
    norms = grad_norm(_module_with_grads(), norm_type=2)
    assert sorted(norms) == ["grad_2.0_norm/0.weight", "grad_2.0_norm_total"]
    assert norms["grad_2.0_norm/0.weight"].item() == pytest.approx(5.0)
    assert norms["grad_2.0_norm_total"].item() == pytest.approx(5.0)


def test_total_is_the_norm_of_all_gradients_as_one_vector() -> None:
    module = _module_with_grads()
    module[1].weight.grad = torch.tensor([[12.0]])
    norms = grad_norm(module, "inf", group_separator="_")
    assert norms["grad_inf_norm_0.weight"].item() == 4.0
    assert norms["grad_inf_norm_total"].item() == 12.0
    assert grad_norm(module, 1)["grad_1.0_norm_total"].item() == pytest.approx(3 + 4 + 12)
    assert grad_norm(module, 2)["grad_2.0_norm_total"].item() == pytest.approx(math.sqrt(9 + 16 + 144))


def test_no_gradients_gives_no_entries_and_a_bad_norm_is_refused() -> None:
    assert grad_norm(nn.Linear(2, 2), 2) == {}
    with pytest.raises(ValueError, match="`norm_type` must be a positive number or 'inf'.*Got 0.0"):
        grad_norm(nn.Linear(2, 2), 0)
