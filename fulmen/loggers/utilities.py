"""Trainer-side helpers for loggers: the combined name/version, and the start-of-run hparams call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fulmen.loggers.logger import Logger, VersionedFolderLogger

if TYPE_CHECKING:  # pragma: no cover
    from fulmen.runtime.trainer import Trainer

__all__ = ["logger_version", "logger_name", "log_hyperparams", "start_experiments"]


def logger_version(loggers: Sequence[Logger], separator: str = "_") -> int | str:
    """The version shown as ``v_num``: the logger's own, or the distinct versions joined for several."""
    if len(loggers) == 1:
        return loggers[0].version  # type: ignore[return-value]
    return separator.join(dict.fromkeys(str(logger.version) for logger in loggers))


def logger_name(loggers: Sequence[Logger], separator: str = "_") -> str:
    """The experiment name: the logger's own, or the distinct names joined for several."""
    if len(loggers) == 1:
        return loggers[0].name or ""
    return separator.join(dict.fromkeys(str(logger.name) for logger in loggers))


def start_experiments(loggers: Sequence[Logger]) -> None:
    """Create every logger's experiment before the ``setup`` hooks, as Lightning does.

    A logger's ``name``/``version`` may exist only once its experiment does (a W&B run id, an
    MLflow experiment and run id), and ModelCheckpoint builds its default folder from them in
    ``setup``. W&B goes first: ``wandb.init`` must precede any TensorBoard writer for
    ``sync_tensorboard`` to see it.

    Unlike Lightning, the ``version_N`` folder loggers (CSV, TensorBoard) are left to start on
    first use: their name and version are known without the experiment, and opening it now would
    create a fresh ``version_N`` folder that a resumed run then abandons for the saved version.
    """
    for logger in sorted(loggers, key=lambda logger: type(logger).__name__ != "WandbLogger"):
        if not isinstance(logger, VersionedFolderLogger) and hasattr(type(logger), "experiment"):
            _ = logger.experiment


def log_hyperparams(trainer: Trainer) -> None:
    """What Lightning does when a run starts: hparams, graph and a save() on every logger.

    The module's ``hparams_initial`` (from ``save_hyperparameters``) and the datamodule's are
    merged; a key both define with different values is an error, because the logged run would
    misreport one of them.
    """
    loggers = list(getattr(trainer, "loggers", None) or [])
    if not loggers:
        return
    module = trainer.lightning_module
    datamodule = getattr(trainer, "datamodule", None)
    module_logs = bool(getattr(module, "_log_hyperparams", False))
    datamodule_logs = datamodule is not None and bool(getattr(datamodule, "_log_hyperparams", False))

    hparams: dict[str, Any] | None = None
    if module_logs and datamodule_logs:
        module_hparams = dict(module.hparams_initial)
        datamodule_hparams = dict(datamodule.hparams_initial)
        conflicts = sorted(
            key
            for key in module_hparams.keys() & datamodule_hparams.keys()
            if not _same_value(module_hparams[key], datamodule_hparams[key])
        )
        if conflicts:
            raise RuntimeError(
                f"Error while merging hparams: the keys {conflicts} are present in both the LightningModule's"
                " and LightningDataModule's hparams but have different values.\n"
                "HINT: rename one of them, or pass ignore=[...] to save_hyperparameters() on one side."
            )
        hparams = {**module_hparams, **datamodule_hparams}
    elif module_logs:
        hparams = dict(module.hparams_initial)
    elif datamodule_logs:
        hparams = dict(datamodule.hparams_initial)

    for logger in loggers:
        if hparams is not None:
            logger.log_hyperparams(hparams)
        logger.log_graph(module)
        logger.save()


def _same_value(a: Any, b: Any) -> bool:
    try:
        import torch

        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and bool(torch.equal(a, b))
        return bool(a == b)
    except Exception:  # values whose == raises or is ambiguous count as different
        return False
