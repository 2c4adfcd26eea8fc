"""Lightning-compatible utilities (``pl.utilities.*``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen._lazy import lazy_getattr

_TABLE = {
    "rank_zero_only": "fulmen.utilities.rank_zero",
    "rank_zero_info": "fulmen.utilities.rank_zero",
    "rank_zero_warn": "fulmen.utilities.rank_zero",
    "rank_zero_debug": "fulmen.utilities.rank_zero",
    "seed_everything": "fulmen.utilities.seed",
    "ModelSummary": "fulmen.utilities.model_summary",
    "rank_zero_deprecation": "fulmen.utilities.rank_zero",
    "AttributeDict": "fulmen.utilities.parsing",
    "is_picklable": "fulmen.utilities.parsing",
    "grad_norm": "fulmen.utilities.grads",
}
__all__ = list(_TABLE)
__getattr__ = lazy_getattr(__name__, _TABLE)

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.utilities.grads import grad_norm
    from fulmen.utilities.model_summary import ModelSummary
    from fulmen.utilities.parsing import AttributeDict, is_picklable
    from fulmen.utilities.rank_zero import rank_zero_debug, rank_zero_deprecation, rank_zero_info, rank_zero_only, rank_zero_warn
    from fulmen.utilities.seed import seed_everything
