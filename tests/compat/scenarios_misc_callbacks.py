"""Compatibility scenarios about DeviceStatsMonitor and OnExceptionCheckpoint: which metric keys
the monitor sends to the loggers, from which hooks and at which steps (the values are the
machine's, so they are not compared), and what OnExceptionCheckpoint leaves behind when fit
fails, how a fit resumes from it, and that a successful fit removes it.

Recorded with a stand-in ``psutil`` on the path (the Lightning venv has none, and without it
Lightning's monitor raises on CPU; fulmen depends on psutil): a package ``psutil`` with ``virtual_memory``,
``swap_memory`` and ``cpu_percent`` plus a ``psutil-7.0.0.dist-info/METADATA`` so that
Lightning's requirement check passes; only key names and steps are compared, never values::

    PYTHONPATH=.:/tmp/psutil_stub /work/venvs/pl26/bin/python tests/compat/record_lightning.py device_stats_monitor

Same contract as ``scenarios.py``: ``fn(pl, root) -> dict`` of plain JSON data, no import of
fulmen or pytorch_lightning.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tests.compat.models import base_module, loader, trainer_kwargs
from tests.compat.normalise import error_or, plain


def _raised(call: Any) -> str:
    """The class name of the error ``call`` raises (both libraries name theirs alike), or "returned"."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - which error is what is observed
        return type(error).__name__
    return "returned"


def _recording_logger(pl: ModuleType, calls: list[tuple[int | None, list[str]]]) -> Any:
    """A logger that keeps (step, sorted metric names) of every ``log_metrics`` call."""

    class RecordingLogger(pl.loggers.Logger):
        @property
        def name(self) -> str:
            return "recording"

        @property
        def version(self) -> int:
            return 0

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            calls.append((step, sorted(metrics)))

    return RecordingLogger()


def _device_stats_calls(calls: list[tuple[int | None, list[str]]]) -> dict[str, Any]:
    """``step:hook`` of each call that carries device stats, and the metric names per hook."""
    order, names = [], {}
    for step, keys in calls:
        stats = [k for k in keys if k.startswith("DeviceStatsMonitor.")]
        if not stats:
            continue
        hooks = sorted({k.split("/", 1)[0] for k in stats})
        order.append(f"{step}:{','.join(hooks)}")
        for hook in hooks:
            names[hook] = sorted(k.split("/", 1)[1] for k in stats if k.startswith(hook + "/"))
    return {"calls": order, "names": names}


def _stats_run(pl: ModuleType, root: Path, monitor: Any, **flags: Any) -> dict[str, Any]:
    calls: list[tuple[int | None, list[str]]] = []
    kwargs = trainer_kwargs(str(root), logger=_recording_logger(pl, calls), callbacks=[monitor], **flags)
    trainer = pl.Trainer(**kwargs)
    model = base_module(pl)()
    out: dict[str, Any] = {}
    trainer.fit(model, loader(8), loader(4, seed=1))
    out["fit"] = _device_stats_calls(calls)
    calls.clear()
    trainer.validate(model, loader(4, seed=1), verbose=False)
    out["validate"] = _device_stats_calls(calls)
    calls.clear()
    trainer.test(model, loader(6, seed=2), verbose=False)
    out["test"] = _device_stats_calls(calls)
    return out


def device_stats_monitor(pl: ModuleType, root: Path) -> dict[str, Any]:
    """DeviceStatsMonitor on CPU: keys and steps of what it logs in fit (2 epochs x 4 batches,
    2 val batches, sanity check on), validate() and test(), with log_every_n_steps 2 and 1, with
    gradient accumulation, with cpu_stats=False; and the error without a logger."""
    monitor_cls = pl.callbacks.DeviceStatsMonitor
    no_logger = pl.Trainer(**trainer_kwargs(str(root / "none"), callbacks=[monitor_cls()]))
    return {
        "every_2": _stats_run(pl, root / "a", monitor_cls(), log_every_n_steps=2),
        "every_1": _stats_run(pl, root / "b", monitor_cls(cpu_stats=True), log_every_n_steps=1, max_epochs=1),
        "accumulate": _stats_run(
            pl, root / "c", monitor_cls(), log_every_n_steps=1, max_epochs=1, accumulate_grad_batches=2
        ),
        "cpu_stats_false": _stats_run(pl, root / "d", monitor_cls(cpu_stats=False), log_every_n_steps=1),
        "no_logger": _raised(lambda: no_logger.fit(base_module(pl)(), loader(4))),
        "no_logger_validate": error_or(lambda: no_logger.validate(base_module(pl)(), loader(4), verbose=False)),
    }


def _failing_module(pl: ModuleType, fail_at: tuple[int, int] | None, seen: list[str]) -> Any:
    class Failing(base_module(pl)):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            seen.append(f"{self.current_epoch}:{batch_idx}")
            if fail_at == (self.current_epoch, batch_idx):
                raise RuntimeError("training_step failed on purpose")
            return super().training_step(batch, batch_idx)

    return Failing()


def _checkpoint_summary(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    fit_loop = checkpoint["loops"]["fit_loop"]
    return {
        "epoch": checkpoint["epoch"],
        "global_step": checkpoint["global_step"],
        "callbacks": sorted(checkpoint["callbacks"]),
        "batch_progress": plain(fit_loop["epoch_loop.batch_progress"]),
        "epoch_progress": plain(fit_loop["epoch_progress"]),
        "batches_that_stepped": fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"],
    }


def on_exception_checkpoint(pl: ModuleType, root: Path) -> dict[str, Any]:
    """OnExceptionCheckpoint: training_step raises at epoch 1, batch 2 (4 batches per epoch); the
    file it saves, the error, the callbacks a Trainer ends up with, a fit resumed from the file
    (which batches it trains), and the file after that successful fit; bad arguments."""
    callback_cls = pl.callbacks.OnExceptionCheckpoint
    dirpath = root / "exc"
    seen: list[str] = []
    flags = trainer_kwargs(str(root), enable_checkpointing=True, callbacks=[callback_cls(dirpath)])
    trainer = pl.Trainer(**flags)
    out: dict[str, Any] = {
        "callbacks": sorted(type(c).__name__ for c in trainer.callbacks),
        "checkpoint_callback": type(trainer.checkpoint_callback).__name__,
        "ckpt_path": Path(trainer.callbacks[-1].ckpt_path).relative_to(root).as_posix(),
    }
    out["fit"] = error_or(lambda: trainer.fit(_failing_module(pl, (1, 2), seen), loader(8)))
    out["trained_before_failure"] = list(seen)
    out["files_after_failure"] = sorted(p.name for p in dirpath.iterdir())
    out["checkpoint"] = _checkpoint_summary(dirpath / "on_exception.ckpt")
    seen.clear()
    resumed = pl.Trainer(**trainer_kwargs(str(root), enable_checkpointing=True, callbacks=[callback_cls(dirpath)]))
    resumed.fit(_failing_module(pl, None, seen), loader(8), ckpt_path=str(dirpath / "on_exception.ckpt"))
    out["trained_after_resume"] = list(seen)
    out["resumed_global_step"] = resumed.global_step
    out["files_after_success"] = sorted(p.name for p in dirpath.iterdir())
    custom = callback_cls(str(root / "other"), filename="crash")
    out["custom_ckpt_path"] = Path(custom.ckpt_path).relative_to(root).as_posix()
    out["empty_filename"] = error_or(lambda: callback_cls(str(root), filename=""))
    out["checkpointing_disabled"] = _raised(lambda: pl.Trainer(**trainer_kwargs(str(root), callbacks=[custom])))
    return out


SCENARIOS = {
    "device_stats_monitor": device_stats_monitor,
    "on_exception_checkpoint": on_exception_checkpoint,
}
