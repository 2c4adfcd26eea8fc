"""The ``tqdm`` subclass behind ``TQDMProgressBar`` (imported when a bar is first created)."""

from __future__ import annotations

import importlib.util

# tqdm.auto renders widgets in notebooks but needs ipywidgets; without it fall back to text.
if importlib.util.find_spec("ipywidgets") is not None:  # pragma: no cover - depends on the environment
    from tqdm.auto import tqdm as _tqdm
else:
    from tqdm import tqdm as _tqdm

__all__ = ["Tqdm"]

_PAD_SIZE = 5


class Tqdm(_tqdm):  # type: ignore[misc, valid-type]
    """``tqdm`` that pads postfix numbers to a fixed width so the bar does not jitter (Lightning's)."""

    @staticmethod
    def format_num(n: int | float | str) -> str:
        """``0.5`` -> ``0.500``, ``1`` stays ``1``; scientific notation is left alone."""
        should_be_padded = isinstance(n, (float, str))
        if not isinstance(n, str):
            n = _tqdm.format_num(n)
        if should_be_padded and "e" not in n:
            if "." not in n and len(n) < _PAD_SIZE:
                try:
                    float(n)
                except ValueError:
                    return n
                n += "."
            n += "0" * (_PAD_SIZE - len(n))
        return n
