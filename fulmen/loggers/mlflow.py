"""``MLFlowLogger``: metrics, params, tags, run status and checkpoints in an MLflow tracking store.

Lightning 2.6's logger, argument for argument. Without a server the store is a local folder
(``tracking_uri="file:./mlruns"``, or ``save_dir``): the runs land in ``<dir>/<experiment_id>/<run_id>/``
as mlflow's file store lays them out. The experiment and the run are created on first use on
global rank zero; other ranks log nothing. mlflow is an optional extra (``fulmen[mlflow]``,
mlflow-skinny is enough); it is imported when a logger is constructed.

mlflow 3.x refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set (it wants a
database backend, which mlflow-skinny cannot provide). Lightning then fails with mlflow's message;
fulmen raises a ``MisconfigurationException`` that says which variable to set.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from fulmen.errors import MisconfigurationException, MissingExtraError
from fulmen.loggers.checkpoint_scan import checkpoint_aliases, checkpoint_metadata, scan_checkpoints
from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.params import add_prefix, convert_params, flatten_dict
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

__all__ = ["MLFlowLogger"]

log = logging.getLogger(__name__)
LOCAL_FILE_URI_PREFIX = "file:"
# Lightning's rule: anything else is dropped from a metric name, with a warning
_INVALID_METRIC_CHARACTERS = re.compile(r"[^a-zA-Z0-9_/. -]+")
_STATUS = {"success": "FINISHED", "failed": "FAILED", "finished": "FINISHED"}
_CHECKPOINT_SETTINGS = (
    "monitor", "mode", "save_last", "save_top_k", "save_weights_only", "_every_n_train_steps", "_every_n_val_epochs",
)  # fmt: skip
_PARAM_VALUE_LIMIT = 250  # Lightning truncates parameter values to this many characters
_PARAMS_PER_BATCH = 100  # the most parameters one mlflow log_batch call accepts


def _import_mlflow_client() -> type[MlflowClient]:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MissingExtraError("mlflow", "mlflow", "MLFlowLogger") from exc
    return MlflowClient


class MLFlowLogger(Logger):
    """Log to MLflow, like Lightning's ``MLFlowLogger``.

    Args:
        experiment_name: the MLflow experiment; created when it does not exist.
        run_name: the run's name (the ``mlflow.runName`` tag, overriding one given in ``tags``).
        tracking_uri: where the store is; None reads ``MLFLOW_TRACKING_URI`` when the logger is built
            (Lightning reads it when its module is imported), else ``file:<save_dir>``.
        tags: tags of the new run.
        save_dir: the local store's folder when no ``tracking_uri`` is given.
        log_model: ``"all"`` copies every checkpoint ModelCheckpoint saves into the run's artifacts
            as it is saved; ``True`` copies them when training ends (during training when
            ``save_top_k == -1``); ``False`` copies none.
        prefix: prepended to every metric name, joined with ``-``.
        artifact_location: where a newly created experiment keeps its artifacts.
        run_id: continue this existing run instead of starting one.
        synchronous: passed to mlflow's ``log_batch`` (block until written); None keeps mlflow's default.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        log_model: Literal[True, False, "all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
    ) -> None:
        if log_model not in (True, False, "all"):
            raise MisconfigurationException(
                f"MLFlowLogger(log_model={log_model!r}) is not a valid choice; expected True, False or 'all'.\n"
                "HINT: 'all' copies every checkpoint as it is saved, True copies them when training ends."
            )
        client_class = _import_mlflow_client()
        super().__init__()
        tracking_uri = tracking_uri or os.getenv("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            tracking_uri = f"{LOCAL_FILE_URI_PREFIX}{save_dir}"
        self._experiment_name = experiment_name
        self._experiment_id: str | None = None
        self._tracking_uri = tracking_uri
        self._run_name = run_name
        self._run_id = run_id
        self.tags = tags
        self._log_model = log_model
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callback: Any = None
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._log_batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}
        self._initialized = False
        self._mlflow_client = _make_client(client_class, tracking_uri)

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        """The ``MlflowClient``; the first access creates the experiment (if missing) and the run."""
        if self._initialized:
            return self._mlflow_client
        import mlflow

        mlflow.set_tracking_uri(self._tracking_uri)
        client = self._mlflow_client
        if self._run_id is not None:
            self._experiment_id = client.get_run(self._run_id).info.experiment_id
            self._initialized = True
            return client
        if self._experiment_id is None:
            self._experiment_id = self._find_or_create_experiment()
        self._run_id = client.create_run(experiment_id=self._experiment_id, tags=self._run_tags()).info.run_id
        self._initialized = True
        return client

    def _find_or_create_experiment(self) -> str:
        found = self._mlflow_client.get_experiment_by_name(self._experiment_name)
        if found is not None and found.lifecycle_stage != "deleted":
            return found.experiment_id
        log.warning(f"Experiment with name {self._experiment_name} not found. Creating it.")
        return self._mlflow_client.create_experiment(name=self._experiment_name, artifact_location=self._artifact_location)

    def _run_tags(self) -> dict[str, Any]:
        """The user's tags, ``run_name`` as ``mlflow.runName``, and mlflow's context tags (user, source)."""
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        if self._run_name is not None:
            self.tags = self.tags or {}
            if MLFLOW_RUN_NAME in self.tags:
                log.warning(f"The tag {MLFLOW_RUN_NAME} is found in tags. The value will be overridden by {self._run_name}.")
            self.tags[MLFLOW_RUN_NAME] = self._run_name
        return resolve_tags(self.tags)

    @property
    def run_id(self) -> str | None:
        """The run's id (creating the experiment and run on first access)."""
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id (creating it on first access)."""
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> str | None:
        """The experiment id (Lightning's choice: checkpoints go to ``save_dir/<experiment_id>/<run_id>``)."""
        return self.experiment_id

    @property
    def version(self) -> str | None:
        """The run id."""
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        """The store's folder for a ``file:`` tracking URI, else None."""
        if self._tracking_uri.startswith(LOCAL_FILE_URI_PREFIX):
            return self._tracking_uri[len(LOCAL_FILE_URI_PREFIX) :]
        return None

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None) -> None:
        """Log hyperparameters as run params: nested keys flattened with ``/``, values as strings cut to 250 characters."""
        from mlflow.entities import Param

        flat = flatten_dict(convert_params(params))
        params_list = [Param(key=key, value=str(value)[:_PARAM_VALUE_LIMIT]) for key, value in flat.items()]
        for start in range(0, len(params_list), _PARAMS_PER_BATCH):
            self.experiment.log_batch(
                run_id=self.run_id, params=params_list[start : start + _PARAMS_PER_BATCH], **self._log_batch_kwargs
            )

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log one batch of metrics at ``step`` (0 when None); strings are dropped and characters
        MLflow refuses are removed from names, each with a warning, as Lightning does."""
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        metrics_list = []
        for key, value in add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(value, str):
                log.warning(f"Discarding metric with string value {key}={value}.")
                continue
            clean = _INVALID_METRIC_CHARACTERS.sub("", key)
            if clean != key:
                rank_zero_warn(
                    f"MLFlow only allows '_', '/', '.' and ' ' special characters in metric name. Replacing {key} with {clean}.",
                    category=RuntimeWarning,
                )
            value = value.item() if hasattr(value, "item") else value
            metrics_list.append(Metric(key=clean, value=value, timestamp=timestamp_ms, step=step or 0))
        self.experiment.log_batch(run_id=self.run_id, metrics=metrics_list, **self._log_batch_kwargs)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Copy the checkpoints still to log (``log_model=True``) and end the run: ``"success"`` and
        ``"finished"`` -> FINISHED, ``"failed"`` -> FAILED. A logger that never logged does nothing."""
        if not self._initialized:
            return
        if self._checkpoint_callback is not None:
            self._scan_and_log_checkpoints(self._checkpoint_callback)
        if self.experiment.get_run(self.run_id):
            self.experiment.set_terminated(self.run_id, _STATUS.get(status, status))

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """``log_model="all"`` (or True with ``save_top_k=-1``): copy new checkpoints now; True: at the end."""
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        """Each new or rewritten checkpoint into the artifact folder named after its file's stem,
        with ``metadata.yaml`` and ``aliases.txt`` beside it (Lightning's layout)."""
        import yaml

        for item in scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = checkpoint_metadata(checkpoint_callback, item, "Checkpoint", _CHECKPOINT_SETTINGS)
            artifact_path = os.path.splitext(os.path.basename(item.path))[0]
            self.experiment.log_artifact(self._run_id, item.path, artifact_path)
            with tempfile.TemporaryDirectory() as tmp_dir:
                with open(os.path.join(tmp_dir, "metadata.yaml"), "w") as file:
                    yaml.dump(metadata, file, default_flow_style=False)
                with open(os.path.join(tmp_dir, "aliases.txt"), "w") as file:
                    file.write(str(checkpoint_aliases(checkpoint_callback, item.path)))
                self.experiment.log_artifacts(self._run_id, tmp_dir, artifact_path)
            self._logged_model_time[item.path] = item.mtime


def _make_client(client_class: type[MlflowClient], tracking_uri: str) -> MlflowClient:
    """The client for ``tracking_uri``; mlflow's refusal of its file store becomes an error with a HINT."""
    from mlflow.exceptions import MlflowException

    try:
        return client_class(tracking_uri)
    except MlflowException as exc:
        if "MLFLOW_ALLOW_FILE_STORE" not in str(exc):
            raise
        raise MisconfigurationException(
            f"MLFlowLogger(tracking_uri={tracking_uri!r}): this mlflow refuses its local file store unless"
            " the environment variable MLFLOW_ALLOW_FILE_STORE=true is set (mlflow 3 wants a database"
            " backend, which mlflow-skinny does not include).\n"
            "HINT: export MLFLOW_ALLOW_FILE_STORE=true to keep the runs in that folder, or pass"
            " tracking_uri='http://<your mlflow server>'."
        ) from exc
