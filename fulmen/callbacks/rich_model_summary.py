"""``RichModelSummary``: the ``ModelSummary`` callback's table drawn with ``rich`` (extra ``fulmen[rich]``).

The numbers are the plain summary's (``fulmen.utilities.model_summary``); only the rendering
differs: a rich table and a grid of totals, printed on rich's console (stdout) by global rank
zero at the start of ``fit``, as Lightning 2.6 prints them.
"""

from __future__ import annotations

from typing import Any

from fulmen.callbacks.model_summary import ModelSummary
from fulmen.callbacks.rich_progress import require_rich
from fulmen.utilities.model_summary import get_formatted_model_size, get_human_readable_count

__all__ = ["RichModelSummary"]


class RichModelSummary(ModelSummary):
    """Print the model summary as a rich table when ``fit`` starts.

    Args:
        max_depth: nesting depth of the listed layers (1: top-level children; -1: all; 0: no table).
        **summarize_kwargs: ``header_style`` (a rich style, default ``"bold magenta"``).
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        require_rich("RichModelSummary")
        super().__init__(max_depth, **summarize_kwargs)

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        """Print the layer table, then the totals, on rich's console."""
        from rich import get_console
        from rich.table import Table

        column_names = [name for name, _ in summary_data]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        table.add_column("Name", justify="left", no_wrap=True)
        table.add_column("Type")
        table.add_column("Params", justify="right")
        if "Params per Device" in column_names:
            table.add_column("Params per Device", justify="right")
        table.add_column("Mode")
        table.add_column("FLOPs", justify="right")
        for name in ("In sizes", "Out sizes"):
            if name in column_names:
                table.add_column(name, justify="right", style="white")
        for row in zip(*(cells for _, cells in summary_data)):
            table.add_row(*row)

        totals = Table.grid(expand=True)
        totals.add_column()
        totals.add_column()
        params = [trainable_parameters, total_parameters - trainable_parameters, total_parameters]
        trainable, frozen, total = (f"{get_human_readable_count(int(p)):<10}" for p in params)
        for label, value in (
            ("Trainable params", trainable),
            ("Non-trainable params", frozen),
            ("Total params", total),
            ("Total estimated model params size (MB)", f"{get_formatted_model_size(model_size):<10}"),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
            ("Total FLOPs", get_human_readable_count(total_flops)),
        ):
            totals.add_row(f"[bold]{label}[/]: {value}")

        console = get_console()
        console.print(table)
        console.print(totals)
