"""ModelSummary: Lightning's table, In/Out sizes from example_input_array, counts and restored modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fulmen.utilities.model_summary import ModelSummary, get_formatted_model_size, get_human_readable_count

EXPECTED_DEPTH_1 = """\
  | Name | Type       | Params | Mode  | FLOPs | In sizes  | Out sizes
----------------------------------------------------------------------------
0 | net  | Sequential | 132 K  | train | 2.6 M | [10, 256] | [10, 512]
----------------------------------------------------------------------------
132 K     Trainable params
0         Non-trainable params
132 K     Total params
0.530     Total estimated model params size (MB)
3         Modules in train mode
0         Modules in eval mode
2.6 M     Total Flops"""


class Net(nn.Module):
    def __init__(self, with_example: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(256, 512), nn.BatchNorm1d(512))
        self.example_input_array = torch.zeros(10, 256) if with_example else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_table_matches_lightnings_docstring_example() -> None:
    assert str(ModelSummary(Net(), max_depth=1)) == EXPECTED_DEPTH_1


def test_all_levels_with_max_depth_minus_one() -> None:
    summary = ModelSummary(Net(), max_depth=-1)
    assert summary.layer_names == ["net", "net.0", "net.1"]
    assert summary.layer_types == ["Sequential", "Linear", "BatchNorm1d"]
    assert summary.in_sizes == [[10, 256], [10, 256], [10, 512]]
    assert summary.out_sizes == [[10, 512], [10, 512], [10, 512]]
    assert summary.param_nums == [132608, 131584, 1024]


def test_without_example_input_there_are_no_size_columns() -> None:
    text = str(ModelSummary(Net(with_example=False)))
    assert "In sizes" not in text and "| FLOPs" in text
    assert "0         Total Flops" in text


def test_modes_and_batchnorm_statistics_are_untouched() -> None:
    model = Net()
    model.net[1].eval()  # a frozen BatchNorm stays frozen
    before = model.net[1].running_mean.clone()
    summary = ModelSummary(model, max_depth=-1)
    assert model.training and model.net[0].training and not model.net[1].training
    assert summary.training_modes == [True, True, False]
    assert summary.total_training_modes == {"train": 2, "eval": 1}
    assert torch.equal(model.net[1].running_mean, before)


def test_frozen_parameters_and_leftover_parameters() -> None:
    model = Net(with_example=False)
    model.scale = nn.Parameter(torch.ones(10))
    for p in model.net[0].parameters():
        p.requires_grad_(False)
    summary = ModelSummary(model)
    assert summary.total_parameters == 132608 + 10
    assert summary.trainable_parameters == 1024 + 10
    text = str(summary)
    assert "other params | n/a" in text
    assert "131 K     Non-trainable params" in text


def test_size_uses_the_parameter_dtype() -> None:
    model = Net(with_example=False).to(torch.float64)
    assert ModelSummary(model).model_size == pytest.approx(132608 * 8 / 1e6)


def test_nested_inputs_and_outputs_and_kwargs() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 2)
            self.example_input_array = (torch.zeros(4, 3), torch.zeros(4, 5))

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.a(x), y

    summary = ModelSummary(Pair())
    assert summary.in_sizes == [[4, 3]] and summary.out_sizes == [[4, 2]]


def test_summary_hooks_are_removed() -> None:
    model = Net()
    ModelSummary(model, max_depth=-1)
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("depth", [-2, 1.5, True])
def test_bad_max_depth(depth: object) -> None:
    with pytest.raises(ValueError, match="max_depth"):
        ModelSummary(Net(), max_depth=depth)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0  "), (123, "123  "), (1234, "1.2 K"), (2e6, "2.0 M"), (3e9, "3.0 B"), (4e14, "400 T"), (5e15, "5,000 T")],
)
def test_human_readable_count(number: float, text: str) -> None:
    assert get_human_readable_count(number) == text


def test_formatted_model_size() -> None:
    assert get_formatted_model_size(1234.56789) == "1,234.568"
