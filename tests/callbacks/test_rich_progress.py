"""RichProgressBar: the missing-extra error, arguments, what it replaces, ranks, failures, predict.

What it prints in fit/validate/test is compared with Lightning 2.6.6 in the compat scenario
``rich_progress_bar``; these are the edges around it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import RichProgressBar, TQDMProgressBar
from fulmen.callbacks.rich_progress import RichProgressBarTheme
from fulmen.errors import MisconfigurationException

_CONSOLE = {"width": 120, "force_terminal": False, "color_system": None}


class Regression(pl.LightningModule):
    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.fail_at = fail_at

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if batch_idx == self.fail_at:
            raise RuntimeError("boom")
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss_tensor", loss, prog_bar=True)
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n: int = 8) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 2)), batch_size=2)


def _trainer(tmp_path: Path, bar: Any, **flags: Any) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, callbacks=[bar],
                      enable_model_summary=False, enable_checkpointing=False, **flags)  # fmt: skip


def _printed(call: Any) -> list[str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        call()
    return [line.rstrip() for line in buffer.getvalue().splitlines() if line.strip()]


def test_without_rich_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rich" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"`RichProgressBar` needs the 'rich' package.*\nHINT: pip install 'fulmen\[rich\]'"):
        RichProgressBar()


@pytest.mark.parametrize("rate", [-1, "fast", True])
def test_refresh_rate_must_be_a_non_negative_number(rate: Any) -> None:
    with pytest.raises(ValueError, match=r"refresh_rate=.*must be a number >= 0\.\nHINT"):
        RichProgressBar(refresh_rate=rate)


def test_defaults_are_lightnings() -> None:
    bar = RichProgressBar()
    assert (bar.refresh_rate, bar._leave, bar.theme) == (100, False, RichProgressBarTheme())
    assert bar.is_enabled and not RichProgressBar(refresh_rate=0).is_enabled


def test_replaces_the_default_bar_and_refuses_a_second_one(tmp_path: Path) -> None:
    bar = RichProgressBar()
    trainer = _trainer(tmp_path, bar)
    assert trainer.progress_bar_callback is bar
    assert not [c for c in trainer.callbacks if isinstance(c, TQDMProgressBar)]
    with pytest.raises(MisconfigurationException, match=r"multiple progress bar callbacks.*\nHINT: keep one"):
        pl.Trainer(callbacks=[RichProgressBar(), TQDMProgressBar()], logger=False)


def test_other_ranks_draw_nothing(tmp_path: Path) -> None:
    bar = RichProgressBar(console_kwargs=_CONSOLE)
    bar.setup(type("T", (), {"is_global_zero": False})(), None, "fit")  # type: ignore[arg-type]
    assert bar.is_disabled
    bar.on_train_start(None, None)  # type: ignore[arg-type]
    assert bar.progress is None


def test_a_failed_fit_stops_the_display_and_the_next_run_draws_again(tmp_path: Path) -> None:
    bar = RichProgressBar(console_kwargs=_CONSOLE)
    with pytest.raises(RuntimeError, match="boom"):
        _printed(lambda: _trainer(tmp_path, bar).fit(Regression(fail_at=2), _loader()))
    assert bar._progress_stopped and not bar.progress.live.is_started
    lines = _printed(lambda: _trainer(tmp_path, bar).fit(Regression(), _loader()))
    assert len(lines) == 1 and lines[0].startswith("Epoch 0/0  ") and " 4/4 " in lines[0], lines
    assert "\x1b" not in lines[0], "no control characters on a console that is not a terminal"


def test_metrics_are_numbers_shown_with_three_decimals(tmp_path: Path) -> None:
    bar = RichProgressBar(console_kwargs=_CONSOLE)
    trainer = _trainer(tmp_path, bar)
    model = Regression()
    lines = _printed(lambda: trainer.fit(model, _loader()))
    metrics = bar.get_metrics(trainer, model)
    assert isinstance(metrics["loss_tensor"], float)
    assert lines[0].endswith(f"loss_tensor: {metrics['loss_tensor']:.3f}"), lines


def test_a_drawing_bar_pickles_without_its_display() -> None:
    bar = RichProgressBar(console_kwargs=_CONSOLE)
    bar._init_progress(None)  # type: ignore[arg-type]
    try:
        assert bar.progress is not None and bar.progress.live.is_started
        copy = pickle.loads(pickle.dumps(bar))  # the live display holds a thread and locks
    finally:
        bar._stop_progress()
    assert copy.progress is None and copy._console is None and copy.theme == bar.theme


def test_predict_draws_a_predicting_bar(tmp_path: Path) -> None:
    bar = RichProgressBar(console_kwargs=_CONSOLE)
    lines = _printed(lambda: _trainer(tmp_path, bar).predict(Regression(), _loader(6)))
    assert len(lines) == 1 and lines[0].startswith("Predicting ") and " 3/3 " in lines[0], lines


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self) -> Any:
        return iter([(torch.ones(2),) for _ in range(3)])


def test_a_loader_without_length_gets_an_open_ended_bar(tmp_path: Path) -> None:
    bar = RichProgressBar(console_kwargs=_CONSOLE)
    lines = _printed(lambda: _trainer(tmp_path, bar).fit(Regression(), DataLoader(_Stream(), batch_size=None)))
    assert len(lines) == 1 and " 3/-- " in lines[0], lines


def test_lightnings_import_paths_work() -> None:
    from fulmen.callbacks.progress.rich_progress import RichProgressBarTheme as Theme

    from fulmen.callbacks.progress import RichProgressBar as FromProgress

    assert FromProgress is RichProgressBar and Theme is RichProgressBarTheme
