"""Compatibility scenario about ``trainer.fit(torch.compile(model))``.

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning. The module is compiled with dynamo's "eager" backend, so the
numbers are those of an uncompiled run and nothing depends on a C++ compiler. Its steps do not
call ``self.log`` (it logs from the batch-end hooks): Lightning 2.6.6 on torch 2.13 stops inside
dynamo when a compiled step calls ``self.log``, which ``log_in_compiled_step`` records apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.nn import functional as F

from tests.compat.models import base_module, loader, recording_callback, recording_module, trainer_kwargs

STEP_METHODS = ("forward", "training_step", "validation_step", "test_step", "predict_step")


def _logging_from_hooks(pl: ModuleType) -> type:
    """``base_module`` whose evaluation steps return their loss; the batch-end hooks log it."""

    class LogsFromHooks(base_module(pl)):
        def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.mse_loss(self(x), y)

        def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.mse_loss(self(x), y)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.log("train_loss", outputs["loss"])

        def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("val_loss", outputs)

        def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("test_loss", outputs)

    return LogsFromHooks


def _weights(module: torch.nn.Module) -> dict[str, list[float]]:
    return {key: [round(v, 6) for v in value.flatten().tolist()] for key, value in module.state_dict().items()}


def _hook_order(pl: ModuleType, root: Path) -> dict[str, list[str]]:
    """Module and callback hooks of a compiled module: fit (1 epoch x 2 batches, 1 val batch), test."""
    calls: list[str] = []
    model = recording_module(pl, calls, train=2, val=1, test=1, base=_logging_from_hooks(pl))
    trainer = pl.Trainer(**trainer_kwargs(str(root), max_epochs=1, callbacks=[recording_callback(pl, calls)]))
    trainer.fit(torch.compile(model, backend="eager"))
    fit_calls = list(calls)
    calls.clear()
    trainer.test(torch.compile(model, backend="eager"), verbose=False)
    return {"fit": fit_calls, "test": list(calls)}


def compiled_module(pl: ModuleType, root: Path) -> dict[str, Any]:
    """What the Trainer holds, the metrics, checkpoint keys, loading into an eager module, test/predict."""
    module = _logging_from_hooks(pl)
    eager = module()
    pl.Trainer(**trainer_kwargs(str(root / "eager"))).fit(eager, loader(8), loader(4, seed=1))

    model = module()
    compiled = torch.compile(model, backend="eager")
    trainer = pl.Trainer(**trainer_kwargs(str(root / "compiled")))
    trainer.fit(compiled, loader(8), loader(4, seed=1))
    metrics = {key: round(float(value), 5) for key, value in sorted(trainer.callback_metrics.items())}
    path = root / "compiled.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    loaded = module.load_from_checkpoint(path)
    tested = trainer.test(compiled, loader(4, seed=2), verbose=False)
    predictions = trainer.predict(compiled, loader(4, seed=2))
    with torch.no_grad():
        eager_predictions = [eager(batch[0]) for batch in loader(4, seed=2)]
    return {
        "held": {
            "lightning_module_is_original": trainer.lightning_module is model,
            "model_is_original": trainer.model is model,
            "type": type(trainer.lightning_module).__name__,
            "is_lightning_module": isinstance(trainer.lightning_module, pl.LightningModule),
            "compiled_methods": sorted(name for name in STEP_METHODS if name in vars(model)),
        },
        "metrics": metrics,
        "weights_equal_eager": _weights(model) == _weights(eager),
        "checkpoint_state_dict_keys": sorted(checkpoint["state_dict"]),
        "loaded": {
            "type": type(loaded).__name__,
            "compiled_methods": sorted(name for name in STEP_METHODS if name in vars(loaded)),
            "weights_equal": _weights(loaded) == _weights(model),
        },
        "test": [{key: round(value, 5) for key, value in row.items()} for row in tested],
        "predictions_equal_eager": all(
            torch.allclose(got, want) for got, want in zip(predictions, eager_predictions, strict=True)
        ),
        "hooks": _hook_order(pl, root / "hooks"),
    }


def _outcome(run: Callable[[], Any]) -> dict[str, Any]:
    try:
        run()
    except Exception as error:  # noqa: BLE001 - which error, if any, is what is observed
        return {"runs": False, "error": type(error).__name__}
    return {"runs": True, "error": None}


class _LogsInTrainingStep(torch.nn.Module):
    """Mixed into ``base_module``: a training_step that calls self.log."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss


def compiled_edge_cases(pl: ModuleType, root: Path) -> dict[str, Any]:
    """self.log in a compiled training_step and validation_step; a compiled module that is not a LightningModule."""

    def fit(name: str, module: torch.nn.Module) -> Callable[[], Any]:
        trainer = pl.Trainer(**trainer_kwargs(str(root / name), max_epochs=1))
        return lambda: trainer.fit(torch.compile(module, backend="eager"), loader(4), loader(2, seed=1))

    logs_in_training_step = type("LogsInTrainingStep", (_LogsInTrainingStep, base_module(pl)), {})
    return {
        "log_in_compiled_training_step": _outcome(fit("train_log", logs_in_training_step())),
        "log_in_compiled_validation_step": _outcome(fit("val_log", base_module(pl)())),
        "not_a_lightning_module": _outcome(fit("plain", torch.nn.Linear(4, 1))),
    }


SCENARIOS: dict[str, Callable[[ModuleType, Path], dict[str, Any]]] = {
    "compiled_module": compiled_module,
    "compiled_edge_cases": compiled_edge_cases,
}
