"""``ModelSummary``: Lightning's layer table for a module.

```
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
2.6 M     Total Flops
```

The In/Out sizes and FLOPs come from one forward pass of ``example_input_array`` (when the
module has one), run in eval mode under ``no_grad``; each module's train/eval mode is
restored afterwards. The size estimate uses each parameter's actual element size, so it is
right for ``bf16-true`` and ``64-true`` as well as for 32-bit and mixed precision (where
parameters stay 32-bit).
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from fulmen.utilities.example_input import call_with_example_input, example_input_on_device
from fulmen.utilities.flops import flop_counter
from fulmen.utilities.rank_zero import WarningCache

__all__ = [
    "ModelSummary",
    "LayerSummary",
    "summarize",
    "get_human_readable_count",
    "get_formatted_model_size",
    "parse_batch_shape",
]

PARAMETER_NUM_UNITS = [" ", "K", "M", "B", "T"]
UNKNOWN_SIZE = "?"
LEFTOVER_PARAMS_NAME = "other params"
NOT_APPLICABLE = "n/a"

_warning_cache = WarningCache()


def _is_uninitialized(p: torch.Tensor) -> bool:
    """True for lazy parameters, whose size is unknown until the first forward."""
    if isinstance(p, nn.parameter.UninitializedParameter):
        _warning_cache.warn(
            "The total number of parameters detected may be inaccurate because the model contains"
            " an instance of `UninitializedParameter`. To get an accurate number, set `self.example_input_array`"
            " in your LightningModule."
        )
        return True
    return False


def _count(params: Any) -> int:
    return sum(p.numel() for p in params if not _is_uninitialized(p))


def parse_batch_shape(batch: Any) -> str | list:
    """The shape of a tensor as a list, nested lists for tuples/lists of tensors, else ``"?"``."""
    if hasattr(batch, "shape"):
        return list(batch.shape)
    if isinstance(batch, (list, tuple)):
        return [parse_batch_shape(el) for el in batch]
    return UNKNOWN_SIZE


class LayerSummary:
    """One row of the table: a submodule, with its In/Out sizes recorded by a one-shot forward hook."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._in_size: Any = None
        self._out_size: Any = None
        self._hook_handle = self._register_hook()

    def _register_hook(self) -> Any:
        if isinstance(self._module, torch.jit.ScriptModule):
            return None

        def hook(_: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            inputs = (*args, *kwargs.values()) if kwargs else args
            self._in_size = parse_batch_shape(inputs[0] if len(inputs) == 1 else inputs)
            self._out_size = parse_batch_shape(out)
            # Only the first call is recorded (a module reused in one forward keeps its first sizes).
            self.detach_hook()

        return self._module.register_forward_hook(hook, with_kwargs=True)

    def detach_hook(self) -> None:
        if self._hook_handle is not None:
            self._hook_handle.remove()
            self._hook_handle = None

    @property
    def in_size(self) -> Any:
        return self._in_size or UNKNOWN_SIZE

    @property
    def out_size(self) -> Any:
        return self._out_size or UNKNOWN_SIZE

    @property
    def layer_type(self) -> str:
        return type(self._module).__name__

    @property
    def num_parameters(self) -> int:
        return _count(self._module.parameters())

    @property
    def training(self) -> bool:
        return self._module.training


class ModelSummary:
    """Summarise ``model``'s submodules down to ``max_depth`` (0: totals only; -1: every level).

    ``str(summary)`` is the table Lightning prints at the start of ``fit``.
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(
                f"`max_depth` can be -1, 0 or > 0, got {max_depth!r}.\n"
                "HINT: 1 shows the top-level submodules, -1 every level, 0 only the totals."
            )
        self._model = model
        self._max_depth = max_depth
        self._flop_counter = flop_counter(depth=max(max_depth + 1, 1))
        self._layer_summary = self.summarize()

    @property
    def named_modules(self) -> list[tuple[str, nn.Module]]:
        if self._max_depth == 0:
            return []
        if self._max_depth == 1:
            return list(self._model.named_children())
        return list(self._model.named_modules())[1:]  # without the root module itself

    @property
    def layer_names(self) -> list[str]:
        return list(self._layer_summary)

    @property
    def layer_types(self) -> list[str]:
        return [layer.layer_type for layer in self._layer_summary.values()]

    @property
    def in_sizes(self) -> list:
        return [layer.in_size for layer in self._layer_summary.values()]

    @property
    def out_sizes(self) -> list:
        return [layer.out_size for layer in self._layer_summary.values()]

    @property
    def param_nums(self) -> list[int]:
        return [layer.num_parameters for layer in self._layer_summary.values()]

    @property
    def training_modes(self) -> list[bool]:
        return [layer.training for layer in self._layer_summary.values()]

    @property
    def total_training_modes(self) -> dict[str, int]:
        modes = [module.training for module in self._model.modules()][1:]  # without the root
        return {"train": modes.count(True), "eval": modes.count(False)}

    @property
    def total_parameters(self) -> int:
        return _count(self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        return _count(p for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        """Parameter memory in MB (1e6 bytes), from each parameter's element size."""
        size = sum(p.numel() * p.element_size() for p in self._model.parameters() if not _is_uninitialized(p))
        return size * 1e-6

    @property
    def total_flops(self) -> int:
        return int(self._flop_counter.get_total_flops())

    @property
    def flop_counts(self) -> dict[str, int]:
        counts = self._flop_counter.get_flop_counts()
        root = type(self._model).__name__
        return {name: int(sum(counts.get(f"{root}.{name}", {}).values())) for name in self.layer_names}

    def summarize(self) -> OrderedDict[str, LayerSummary]:
        summary = OrderedDict((name, LayerSummary(module)) for name, module in self.named_modules)
        if getattr(self._model, "example_input_array", None) is not None:
            try:
                self._forward_example_input()
            finally:
                for layer in summary.values():
                    layer.detach_hook()
        else:
            for layer in summary.values():
                layer.detach_hook()
        if self._max_depth >= 1:
            for name in [name for name in summary if name.count(".") >= self._max_depth]:
                del summary[name]
        return summary

    def _forward_example_input(self) -> None:
        """Run the example input once so the hooks see every layer's input and output sizes."""
        model = self._model
        example = example_input_on_device(model, model.example_input_array)
        modes = {module: module.training for module in model.modules()}
        trainer = getattr(model, "_trainer", None)
        precision_plugin = getattr(trainer, "precision_plugin", None)
        forward_context = getattr(precision_plugin, "forward_context", None)
        context = forward_context() if callable(forward_context) else contextlib.nullcontext()
        model.eval()
        try:
            with torch.no_grad(), context, self._flop_counter:
                call_with_example_input(model, example)
        finally:
            for module, training in modes.items():
                module.training = training

    def _get_summary_data(self) -> list[tuple[str, list[str]]]:
        """The table's columns as ``(header, cells)`` pairs."""
        flops = self.flop_counts
        arrays: list[tuple[str, list[str]]] = [
            (" ", [str(i) for i in range(len(self._layer_summary))]),
            ("Name", self.layer_names),
            ("Type", self.layer_types),
            ("Params", [get_human_readable_count(n) for n in self.param_nums]),
            ("Mode", ["train" if mode else "eval" for mode in self.training_modes]),
            ("FLOPs", [get_human_readable_count(flops[name]) for name in self.layer_names]),
        ]
        if getattr(self._model, "example_input_array", None) is not None:
            arrays.append(("In sizes", [str(x) for x in self.in_sizes]))
            arrays.append(("Out sizes", [str(x) for x in self.out_sizes]))
        leftover = self.total_parameters - self.total_layer_params
        if leftover > 0:
            # Parameters registered directly on the root (not in a listed submodule) get a row too.
            columns = dict(arrays)
            columns[" "].append(" ")
            columns["Name"].append(LEFTOVER_PARAMS_NAME)
            columns["Params"].append(get_human_readable_count(leftover))
            for header in ("Type", "Mode", "FLOPs", "In sizes", "Out sizes"):
                if header in columns:
                    columns[header].append(NOT_APPLICABLE)
        return arrays

    def __str__(self) -> str:
        return _format_summary_table(
            self.total_parameters,
            self.trainable_parameters,
            self.model_size,
            self.total_training_modes,
            self.total_flops,
            *self._get_summary_data(),
        )

    def __repr__(self) -> str:
        return str(self)


def summarize(lightning_module: nn.Module, max_depth: int = 1) -> ModelSummary:
    """``ModelSummary(lightning_module, max_depth)`` (Lightning's function name)."""
    return ModelSummary(lightning_module, max_depth=max_depth)


def _format_summary_table(
    total_parameters: int,
    trainable_parameters: int,
    model_size: float,
    total_training_modes: dict[str, int],
    total_flops: int,
    *cols: tuple[str, list[str]],
) -> str:
    """Lay the columns out as Lightning does: ``|``-separated, left-aligned, with a totals footer."""
    n_rows = len(cols[0][1])
    widths = [max([len(header), *(len(str(cell)) for cell in cells)]) if n_rows else len(header) for header, cells in cols]
    total_width = sum(widths) + 3 * (1 + len(cols))
    lines = [" | ".join(f"{header:<{w}}" for (header, _), w in zip(cols, widths)), "-" * total_width]
    for i in range(n_rows):
        lines.append(" | ".join(f"{str(cells[i]):<{w}}" for (_, cells), w in zip(cols, widths)))
    lines.append("-" * total_width)
    footer = [
        (get_human_readable_count(trainable_parameters), "Trainable params"),
        (get_human_readable_count(total_parameters - trainable_parameters), "Non-trainable params"),
        (get_human_readable_count(total_parameters), "Total params"),
        (get_formatted_model_size(model_size), "Total estimated model params size (MB)"),
        (str(total_training_modes["train"]), "Modules in train mode"),
        (str(total_training_modes["eval"]), "Modules in eval mode"),
        (get_human_readable_count(total_flops), "Total Flops"),
    ]
    lines.extend(f"{value:<10}{label}" for value, label in footer)
    return "\n".join(lines)


def get_formatted_model_size(total_model_size: float) -> str:
    """Megabytes with three decimals and thousands separators (``1,234.568``)."""
    return f"{total_model_size:,.3f}"


def get_human_readable_count(number: int | float) -> str:
    """``123  ``, ``1.2 K``, ``2.0 M``, ``3.0 B``, ``400 T``, ``5,000 T``: Lightning's abbreviations."""
    if number < 0:
        raise ValueError(f"get_human_readable_count expects a number >= 0, got {number}")
    num_digits = int(math.floor(math.log10(number)) + 1 if number > 0 else 1)
    num_groups = min(int(math.ceil(num_digits / 3)), len(PARAMETER_NUM_UNITS))
    scaled = number * 10 ** (-3 * (num_groups - 1))
    index = num_groups - 1
    if index < 1 or scaled >= 100:
        return f"{int(scaled):,d} {PARAMETER_NUM_UNITS[index]}"
    return f"{scaled:,.1f} {PARAMETER_NUM_UNITS[index]}"
