"""Compatibility scenarios about the rich callbacks on a console that is not a terminal (a log
file, a pipe, ``launch``'s rank-0 output): what ``RichModelSummary`` prints (the table's rows
and the totals) and what ``RichProgressBar`` leaves on stdout in fit, validate() and test(),
with ``leave`` off and on; elapsed times and speeds are masked, everything else is compared
character by character. Also what ``get_metrics`` returns and the Trainer's default callbacks
next to a given RichProgressBar.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning (rich itself is imported: it is what both libraries draw with).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import plain
from tests.compat.scenarios_misc_callbacks import _raised

# the console both libraries build from console_kwargs: fixed width, no colours, not a terminal
_CONSOLE = {"width": 200, "force_terminal": False, "color_system": None}
_TIME = re.compile(r"\d+:\d\d:\d\d • (\d+:\d\d:\d\d|-:--:--)")
_SPEED = re.compile(r"\d+\.\d\dit/s")


def _text(buffer: io.StringIO) -> list[str]:
    """The printed lines, right-stripped, times and speeds masked."""
    lines = [_SPEED.sub("<speed>", _TIME.sub("<elapsed> • <remaining>", line)).rstrip()
             for line in buffer.getvalue().splitlines()]  # fmt: skip
    return [line for line in lines if line]


def _summary_module(pl: ModuleType) -> Any:
    class Net(base_module(pl)):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
            self.frozen = torch.nn.Linear(4, 4).requires_grad_(False)
            self.example_input_array = torch.zeros(2, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.frozen(self.encoder(x)))

    return Net()


def rich_model_summary(pl: ModuleType, root: Path) -> dict[str, Any]:
    """RichModelSummary(max_depth=1 / 2) at the start of fit, printed on a 200-column console that
    is not a terminal; the default ModelSummary is not added next to it."""
    import rich

    out: dict[str, Any] = {}
    for depth in (1, 2):
        rich.reconfigure(**_CONSOLE)
        summary = pl.callbacks.RichModelSummary(max_depth=depth)
        trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, callbacks=[summary], enable_model_summary=True,
                                              limit_train_batches=1, limit_val_batches=0))  # fmt: skip
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            trainer.fit(_summary_module(pl), loader(4))
        out[f"max_depth_{depth}"] = _text(buffer)
        out[f"callbacks_{depth}"] = sorted(type(c).__name__ for c in trainer.callbacks)
    return out


def _bar_module(pl: ModuleType) -> Any:
    class Logged(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss, prog_bar=True)
            self.log("step_tensor", torch.tensor(float(batch_idx)), prog_bar=True, on_step=True, on_epoch=False)
            return loss

        def test_step(self, batch: Any, batch_idx: int) -> None:
            self.log("test_loss", float(batch_idx))

    return Logged()


def _bar_runs(pl: ModuleType, root: Path, leave: bool) -> dict[str, Any]:
    bar = pl.callbacks.RichProgressBar(leave=leave, console_kwargs=dict(_CONSOLE))
    logger = pl.loggers.CSVLogger(str(root), name="rich")
    flags = trainer_kwargs(str(root), enable_progress_bar=True, logger=logger, callbacks=[bar])
    trainer = pl.Trainer(**flags)
    model = _bar_module(pl)
    out: dict[str, Any] = {"callbacks": sorted(type(c).__name__ for c in trainer.callbacks)}
    for run, call in (
        ("fit", lambda: trainer.fit(model, loader(8), loader(4, seed=1))),
        ("validate", lambda: trainer.validate(model, loader(4, seed=1), verbose=False)),
        ("test", lambda: trainer.test(model, loader(6, seed=2), verbose=False)),
    ):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            call()
        out[run] = _text(buffer)
        if run == "fit":
            out["fit_metrics"] = plain(bar.get_metrics(trainer, model))
    return out


def rich_progress_bar(pl: ModuleType, root: Path) -> dict[str, Any]:
    """RichProgressBar on a 200-column non-terminal console: fit (2 epochs x 4 batches, 2 val
    batches, sanity check on), validate() and test(), with leave=False and leave=True, and a
    metric logged with prog_bar=True; the metrics after fit; refresh_rate 0 prints nothing; the
    errors for two bars and for a bar with enable_progress_bar=False."""
    out = {"leave_false": _bar_runs(pl, root / "a", False), "leave_true": _bar_runs(pl, root / "b", True)}
    silent = pl.callbacks.RichProgressBar(refresh_rate=0, console_kwargs=dict(_CONSOLE))
    trainer = pl.Trainer(**trainer_kwargs(str(root / "c"), enable_progress_bar=True, callbacks=[silent]))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        trainer.fit(_bar_module(pl), loader(4))
    out["refresh_rate_0"] = _text(buffer)
    out["theme_defaults"] = plain(vars(pl.callbacks.RichProgressBar().theme))
    two = [pl.callbacks.RichProgressBar(), pl.callbacks.TQDMProgressBar()]
    out["two_bars"] = _raised(lambda: pl.Trainer(**trainer_kwargs(str(root), enable_progress_bar=True, callbacks=two)))
    out["bar_with_progress_disabled"] = _raised(
        lambda: pl.Trainer(**trainer_kwargs(str(root), callbacks=[pl.callbacks.RichProgressBar()]))
    )
    return out


SCENARIOS = {
    "rich_model_summary": rich_model_summary,
    "rich_progress_bar": rich_progress_bar,
}
