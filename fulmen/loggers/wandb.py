"""``WandbLogger``: Weights & Biases runs, with Lightning 2.6's arguments and behaviour.

The run is started (``wandb.init``) on first use on global rank zero; other ranks get a dummy
experiment. Metrics are logged with ``trainer/global_step`` as their x-axis, hyperparameters go
into the run's config, and ``log_model`` uploads ModelCheckpoint's files as ``model`` artifacts.
``offline=True`` writes the run under ``<save_dir>/wandb/offline-run-*`` without any network
(``wandb sync`` uploads it later); unlike Lightning, which sets ``WANDB_MODE`` for the whole
process, fulmen passes ``mode="offline"`` to this run only. wandb is an optional extra
(``fulmen[wandb]``), imported when a logger is constructed.

Lightning does not finish the wandb run at the end of ``fit`` (several fit/test calls share it);
neither does fulmen: call ``wandb.finish()`` (or let the process exit) to close it.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from fulmen.errors import MisconfigurationException, MissingExtraError
from fulmen.loggers.checkpoint_scan import checkpoint_aliases, checkpoint_metadata, scan_checkpoints
from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.params import add_prefix, convert_json_serializable, convert_params, sanitize_callable_params
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn
    from wandb import Artifact

__all__ = ["WandbLogger"]

STEP_METRIC = "trainer/global_step"  # the x-axis Lightning defines for every metric


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise MissingExtraError("wandb", "wandb", "WandbLogger") from exc
    return wandb


class WandbLogger(Logger):
    """Log to Weights & Biases, like Lightning's ``WandbLogger``.

    Args:
        name: display name of the run.
        save_dir: folder wandb writes into (``<save_dir>/wandb/``); ``dir`` is an alias used when
            ``save_dir`` is None.
        version, id: the run id, to resume a run (``version`` wins).
        offline: write locally only; cannot be combined with ``log_model``.
        anonymous: log without an account (``anonymous="allow"``).
        project: the project (the logger's ``name``); default ``$WANDB_PROJECT`` or ``"lightning_logs"``.
        log_model: ``"all"``: upload each checkpoint when it is saved; ``True``: at the end of a
            successful fit (during training with ``save_top_k == -1``); ``False``: none.
        experiment: an existing wandb run to log into instead of starting one.
        prefix: prepended to every metric name, joined with ``-``.
        checkpoint_name: the model artifact's name (default ``model-<run id>``).
        add_file_policy: ``"mutable"`` copies a checkpoint before upload, ``"immutable"`` does not.
        **kwargs: passed to ``wandb.init`` (``entity``, ``group``, ``tags``, ``mode``, ...).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike[str] = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike[str] | None = None,  # noqa: A002 - Lightning's argument name
        id: str | None = None,  # noqa: A002 - Lightning's argument name
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: Literal["all"] | bool = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        **kwargs: Any,
    ) -> None:
        _import_wandb()
        _check_arguments(offline, log_model, add_file_policy)
        super().__init__()
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callbacks: dict[int, Any] = {}
        self.add_file_policy = add_file_policy
        self._wandb_init: dict[str, Any] = {
            "name": name,
            "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
            "dir": _fspath(save_dir) or _fspath(dir),
            "id": version or id,
            "resume": "allow",
            **kwargs,
        }
        if anonymous:  # only when asked: wandb warns about the setting even when it is None
            self._wandb_init["anonymous"] = "allow"
        if offline:
            self._wandb_init.setdefault("mode", "offline")
        self._project = self._wandb_init.get("project")
        self._save_dir = self._wandb_init.get("dir")
        self._name = self._wandb_init.get("name")
        self._id = self._wandb_init.get("id")
        self._checkpoint_name = checkpoint_name

    def __getstate__(self) -> dict[str, Any]:
        # A run cannot be pickled: start it here and let the unpickled copy resume it by id.
        experiment = self.experiment
        state = self.__dict__.copy()
        if self._experiment is not None:
            state["_id"] = getattr(experiment, "id", None)
            state["_wandb_init"] = {**self._wandb_init, "id": state["_id"]}
            state["_name"] = getattr(experiment, "name", self._name)
        state["_experiment"] = None
        return state

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The wandb ``Run``: the one in progress (with a warning) or a new one from ``wandb.init``."""
        if self._experiment is not None:
            return self._experiment
        wandb = _import_wandb()
        if wandb.run is not None:
            rank_zero_warn(
                "There is a wandb run already in progress and newly created instances of `WandbLogger` will reuse"
                " this run. If this is not desired, call `wandb.finish()` before instantiating `WandbLogger`."
            )
            self._experiment = wandb.run
            return self._experiment
        self._experiment = wandb.init(**self._wandb_init)
        if getattr(self._experiment, "define_metric", None):
            if self._wandb_init.get("sync_tensorboard"):
                self._experiment.define_metric("*", step_metric="global_step")
            else:
                self._experiment.define_metric(STEP_METRIC)
                self._experiment.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        return self._experiment

    def watch(self, model: nn.Module, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Have wandb record ``model``'s gradients (and/or parameters) every ``log_freq`` steps."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None) -> None:
        """Put hyperparameters into the run's config (callables by name, non-JSON values as strings)."""
        params = convert_json_serializable(sanitize_callable_params(convert_params(params)))
        self.experiment.config.update(params, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log metrics, with ``trainer/global_step = step`` as their x-axis when a step is given."""
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        if step is not None and not self._wandb_init.get("sync_tensorboard"):
            self.experiment.log({**metrics, STEP_METRIC: step})
        else:
            self.experiment.log(metrics)

    @rank_zero_only
    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log a ``wandb.Table`` from ``columns`` and ``data``, or from a ``dataframe``."""
        wandb = _import_wandb()
        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    @rank_zero_only
    def log_text(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[str]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log text as a table (Lightning's ``log_text``)."""
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log images; each keyword is a list with one value per image (``caption=[...]``)."""
        self._log_media(key, images, "images", _import_wandb().Image, step, kwargs)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log audio clips; each keyword is a list with one value per clip (``sample_rate=[...]``)."""
        self._log_media(key, audios, "audios", _import_wandb().Audio, step, kwargs)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log videos; each keyword is a list with one value per video (``fps=[...]``)."""
        self._log_media(key, videos, "videos", _import_wandb().Video, step, kwargs)

    def _log_media(
        self, key: str, items: list[Any], what: str, media: Callable[..., Any], step: int | None, kwargs: dict
    ) -> None:
        if not isinstance(items, list):
            raise TypeError(f'Expected a list as "{what}", found {type(items)}')
        for name, values in kwargs.items():
            if len(values) != len(items):
                raise ValueError(f"Expected {len(items)} items but only found {len(values)} for {name}")
        per_item = [{name: kwargs[name][index] for name in kwargs} for index in range(len(items))]
        self.log_metrics({key: [media(item, **extra) for item, extra in zip(items, per_item)]}, step)

    @property
    def save_dir(self) -> str | None:
        """The folder wandb writes into."""
        return self._save_dir

    @property
    def name(self) -> str | None:
        """The project name (not the run's display name: that is ``experiment.name``)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id: the started run's, else the one given (no run is started to answer)."""
        return self._experiment.id if self._experiment else self._id

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """``log_model="all"`` (or True with ``save_top_k=-1``): upload new checkpoints now; True: at the end."""
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

    @staticmethod
    @rank_zero_only
    def download_artifact(
        artifact: str,
        save_dir: str | os.PathLike[str] | None = None,
        artifact_type: str | None = None,
        use_artifact: bool | None = True,
    ) -> str:
        """Download an artifact (through the current run when ``use_artifact``, so the lineage is recorded)."""
        wandb = _import_wandb()
        if wandb.run is not None and use_artifact:
            found = wandb.run.use_artifact(artifact)
        else:
            found = wandb.Api().artifact(artifact, type=artifact_type)
        return found.download(root=None if save_dir is None else os.fspath(save_dir))

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Artifact:
        """Record that this run uses ``artifact``; returns it."""
        return self.experiment.use_artifact(artifact, type=artifact_type)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """After a successful run, upload the checkpoints ``log_model=True`` kept for the end."""
        if status != "success" or self._experiment is None:
            return
        for checkpoint_callback in self._checkpoint_callbacks.values():
            self._scan_and_log_checkpoints(checkpoint_callback)

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        """Each new or rewritten checkpoint as a version of the ``model`` artifact (file ``model.ckpt``)."""
        wandb = _import_wandb()
        for item in scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = checkpoint_metadata(checkpoint_callback, item, type(checkpoint_callback).__name__)
            if not self._checkpoint_name:
                self._checkpoint_name = f"model-{self.experiment.id}"
            artifact = wandb.Artifact(name=self._checkpoint_name, type="model", metadata=metadata)
            artifact.add_file(item.path, name="model.ckpt", policy=self.add_file_policy)
            self.experiment.log_artifact(artifact, aliases=checkpoint_aliases(checkpoint_callback, item.path))
            self._logged_model_time[item.path] = item.mtime


def _fspath(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


def _check_arguments(offline: bool, log_model: Any, add_file_policy: str) -> None:
    if offline and log_model:
        raise MisconfigurationException(
            f"Providing log_model={log_model} and offline={offline} is an invalid configuration"
            " since model checkpoints cannot be uploaded in offline mode.\n"
            "Hint: Set `offline=False` to log your model."
        )
    if log_model not in (True, False, "all"):
        raise MisconfigurationException(
            f"WandbLogger(log_model={log_model!r}) is not a valid choice; expected True, False or 'all'.\n"
            "HINT: 'all' uploads every checkpoint as it is saved, True uploads them when training ends."
        )
    if add_file_policy not in ("mutable", "immutable"):
        raise MisconfigurationException(
            f"WandbLogger(add_file_policy={add_file_policy!r}) is not a valid choice; expected 'mutable' or"
            " 'immutable'.\nHINT: 'mutable' copies a checkpoint before upload, so a later rewrite cannot change it."
        )
