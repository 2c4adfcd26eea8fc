"""Compatibility scenario about what the validation/test epoch-end hooks see: the epoch values
logged in validation_step / test_step are in callback_metrics, logged_metrics and
progress_bar_metrics when ``on_{validation,test}_epoch_end`` runs (callbacks first, then the
module), in fit (sanity check and every epoch), validate() and test(), with one and with two
loaders; and what the hooks log there is published afterwards.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import metrics


def _metric_dicts(trainer: Any) -> dict[str, Any]:
    return {
        "callback_metrics": metrics(trainer.callback_metrics),
        "logged_metrics": metrics(trainer.logged_metrics),
        "progress_bar_metrics": metrics(trainer.progress_bar_metrics),
    }


def _where(trainer: Any, run: str) -> str:
    """``<run>.sanity`` / ``<run>.epoch_N`` inside fit, ``<run>`` for validate() and test()."""
    if trainer.sanity_checking:
        return f"{run}.sanity"
    return f"{run}.epoch_{trainer.current_epoch}" if run.endswith("fit") else run


def _observing_run(pl: ModuleType, root: Path, run_prefix: str, val_loaders: list[Any]) -> dict[str, Any]:
    """fit (2 epochs x 2 batches, sanity check on), then validate() and test() of one model;
    what each on_{validation,test}_epoch_end hook saw, keyed ``<run>.<where>.<who>``."""
    seen: dict[str, Any] = {}
    run = [""]

    class EpochEndModule(base_module(pl)):
        def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            v = float(batch_idx + 1 + 10 * self.current_epoch + 100 * dataloader_idx)
            self.log("val_loss", v)
            self.log("val_both", v, on_step=True, on_epoch=True, prog_bar=True)

        def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            v = float(batch_idx + 1 + 100 * dataloader_idx)
            self.log("test_loss", v)
            self.log("test_both", v, on_step=True, on_epoch=True, prog_bar=True)

        def on_validation_epoch_end(self) -> None:
            seen[f"{_where(self.trainer, run[0])}.module"] = _metric_dicts(self.trainer)
            self.log("module_val_end", float(200 + self.current_epoch), prog_bar=True)

        def on_test_epoch_end(self) -> None:
            seen[f"{_where(self.trainer, run[0])}.module"] = _metric_dicts(self.trainer)
            self.log("module_test_end", 300.0, prog_bar=True)

    class FirstCallback(pl.Callback):
        """Reads the metrics (as EarlyStopping/ModelCheckpoint do) and logs one value of its own."""

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            seen[f"{_where(trainer, run[0])}.first_callback"] = _metric_dicts(trainer)
            pl_module.log("callback_val_end", float(50 + trainer.current_epoch))

        def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            seen[f"{_where(trainer, run[0])}.first_callback"] = _metric_dicts(trainer)
            pl_module.log("callback_test_end", 60.0)

        def on_validation_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
        ) -> None:
            if dataloader_idx == 1 and batch_idx == 0:  # the first loader has just finished
                seen[f"{_where(trainer, run[0])}.second_loader_start"] = metrics(trainer.callback_metrics)

    class SecondCallback(pl.Callback):
        """Runs after FirstCallback: sees what FirstCallback logged."""

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            seen[f"{_where(trainer, run[0])}.second_callback"] = metrics(trainer.callback_metrics)

    model = EpochEndModule()
    callbacks = [FirstCallback(), SecondCallback()]
    trainer = pl.Trainer(**trainer_kwargs(str(root), callbacks=callbacks))
    run[0] = f"{run_prefix}.fit"
    trainer.fit(model, loader(4), val_loaders)
    after = {f"{run_prefix}.fit.after": _metric_dicts(trainer)}
    run[0] = f"{run_prefix}.validate"
    trainer.validate(model, val_loaders, verbose=False)
    after[f"{run_prefix}.validate.after"] = _metric_dicts(trainer)
    run[0] = f"{run_prefix}.test"
    trainer.test(model, val_loaders, verbose=False)
    after[f"{run_prefix}.test.after"] = _metric_dicts(trainer)
    return {**seen, **after}


def eval_epoch_end_metrics(pl: ModuleType, root: Path) -> dict[str, Any]:
    """The three metric dicts seen by two callbacks' and the module's on_validation_epoch_end /
    on_test_epoch_end (and by a callback when the second val loader starts), with one val loader
    (2 batches) and with two (2 and 1 batches), in fit's sanity check and epochs, validate() and
    test(); and the dicts after each run. Values are crafted: batch index, epoch, loader index."""
    one = _observing_run(pl, root / "one", "one_loader", loader(4, seed=1))
    two = _observing_run(pl, root / "two", "two_loaders", [loader(4, seed=1), loader(2, seed=2)])
    return {**one, **two}


SCENARIOS = {"eval_epoch_end_metrics": eval_epoch_end_metrics}
