"""``ModelSummary`` callback: print the layer table when ``fit`` starts (global rank zero only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fulmen.core.callback import Callback
from fulmen.utilities.model_summary import ModelSummary as _Summary
from fulmen.utilities.model_summary import _format_summary_table
from fulmen.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.core.module import LightningModule
    from fulmen.runtime.trainer import Trainer

__all__ = ["ModelSummary"]


class ModelSummary(Callback):
    """Log the model summary table at ``on_fit_start``.

    Args:
        max_depth: nesting depth of the listed layers (1: top-level children; -1: all; 0: no table).
        **summarize_kwargs: passed on to ``summarize()`` for subclasses that render differently.
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(
                f"ModelSummary(max_depth={max_depth!r}): expected -1, 0 or a positive int.\n"
                "HINT: 1 shows the top-level submodules, -1 every level, 0 turns the summary off."
            )
        self._max_depth = max_depth
        self._summarize_kwargs = summarize_kwargs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._max_depth:
            return
        # Built on every rank (the forward pass must not diverge between ranks), printed on zero.
        summary = _Summary(pl_module, max_depth=self._max_depth)
        if trainer.is_global_zero:
            self.summarize(
                summary._get_summary_data(),
                summary.total_parameters,
                summary.trainable_parameters,
                summary.model_size,
                summary.total_training_modes,
                total_flops=summary.total_flops,
                **self._summarize_kwargs,
            )

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
        """Render the table and log it at INFO level (stderr unless logging is configured)."""
        table = _format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *summary_data
        )
        rank_zero_info("\n" + table)
