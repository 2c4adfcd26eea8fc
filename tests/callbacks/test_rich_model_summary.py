"""RichModelSummary: the missing-extra error, its arguments, rank zero only, and its totals.

The full table is compared with Lightning 2.6.6 in the compat scenario ``rich_model_summary``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rich
import torch

import fulmen as pl
from fulmen.callbacks import ModelSummary, RichModelSummary


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(1000, 1000)
        self.head = torch.nn.Linear(1000, 1).requires_grad_(False)


def _printed(call: Any) -> str:
    rich.reconfigure(width=120, force_terminal=False, color_system=None)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        call()
    return buffer.getvalue()


def test_without_rich_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rich" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"`RichModelSummary` needs the 'rich' package.*\nHINT: pip install 'fulmen\[rich\]'"):
        RichModelSummary()


def test_bad_depth_gets_the_summary_error() -> None:
    with pytest.raises(ValueError, match=r"max_depth=-2.*\nHINT"):
        RichModelSummary(max_depth=-2)


def test_is_a_model_summary_so_no_default_one_is_added(tmp_path: Path) -> None:
    summary = RichModelSummary()
    trainer = pl.Trainer(default_root_dir=tmp_path, callbacks=[summary], logger=False, enable_progress_bar=False)
    assert [c for c in trainer.callbacks if isinstance(c, ModelSummary)] == [summary]


def test_rank_zero_prints_rows_and_totals_other_ranks_nothing() -> None:
    summary = RichModelSummary(max_depth=1, header_style="bold")
    text = _printed(lambda: summary.on_fit_start(SimpleNamespace(is_global_zero=True), Net()))  # type: ignore[arg-type]
    assert "│ 0 │ body │ Linear │  1.0 M │ train │" in text, text
    assert "│ 1 │ head │ Linear │  1.0 K │ train │" in text, text
    for line in ("Trainable params: 1.0 M", "Non-trainable params: 1.0 K", "Total params: 1.0 M",
                 "Total estimated model params size (MB): 4.008", "Modules in train mode: 2", "Total FLOPs: 0"):  # fmt: skip
        assert line in text, text
    assert _printed(lambda: summary.on_fit_start(SimpleNamespace(is_global_zero=False), Net())) == ""  # type: ignore[arg-type]


def test_depth_zero_prints_nothing() -> None:
    assert _printed(lambda: RichModelSummary(max_depth=0).on_fit_start(SimpleNamespace(is_global_zero=True), Net())) == ""  # type: ignore[arg-type]
