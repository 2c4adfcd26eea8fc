"""``TensorBoardLogger``: real tfevents files through ``torch.utils.tensorboard.SummaryWriter``.

Layout, like Lightning: ``save_dir/name/version_N/`` holds ``events.out.tfevents.*`` and
``hparams.yaml``; the next free ``N`` is chosen on first use. The writer (and with it the
tensorboard package) is created on first use, so importing this module stays cheap.

On resume (``load_state_dict``) the logger reopens the same ``version_N`` and starts its writer
with ``purge_step`` just past the last step logged before the checkpoint: TensorBoard then hides
the events written between that checkpoint and the interruption, so curves have no duplicates.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from fulmen.loggers.logger import VersionedFolderLogger, rank_zero_experiment
from fulmen.loggers.params import add_prefix, convert_params, flatten_dict, sanitize_params
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(VersionedFolderLogger):
    """Log to ``save_dir/name/version/sub_dir`` in TensorBoard's format.

    Args:
        save_dir, name, version: the folder ``save_dir/name/version_N`` (``VersionedFolderLogger``;
            a str version is the folder name itself).
        log_graph: add the model graph (needs ``example_input_array``) when the Trainer starts.
        default_hp_metric: log ``hp_metric = -1`` with the hyperparameters so the HParams tab
            shows the run even when no metric is passed to ``log_hyperparams``.
        prefix: prepended to every metric name, joined with ``-``.
        sub_dir: extra folder inside the version folder.
        **kwargs: passed to ``SummaryWriter`` (e.g. ``flush_secs``, ``max_queue``).
    """

    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(save_dir, name, version)
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._kwargs = kwargs
        self._experiment: Any = None
        self.hparams: dict[str, Any] = {}
        self._hparams_dirty = True  # hparams.yaml not yet written for the current hparams
        self._last_step: int | None = None
        self._purge_step: int | None = None

    # -- where things go -------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        """``save_dir/name/version_N[/sub_dir]``, with ``~`` and ``$VARS`` expanded."""
        log_dir = super().log_dir
        if self._sub_dir is not None:
            log_dir = os.path.join(log_dir, self._sub_dir)
        return os.path.expanduser(os.path.expandvars(log_dir))

    @property
    def sub_dir(self) -> str | None:
        return self._sub_dir

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``SummaryWriter``, created (with its folder) on first access on rank zero."""
        if self._experiment is not None:
            return self._experiment
        from torch.utils.tensorboard import SummaryWriter  # heavy: imports tensorboard

        os.makedirs(self.root_dir, exist_ok=True)
        kwargs = dict(self._kwargs)
        if self._purge_step is not None:
            kwargs.setdefault("purge_step", self._purge_step)
        self._experiment = SummaryWriter(log_dir=self.log_dir, **kwargs)
        return self._experiment

    # -- logging ---------------------------------------------------------------------------

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Write each metric as a scalar (a dict value as a group of scalars) at ``step``."""
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        writer = self.experiment
        for key, value in metrics.items():
            if isinstance(value, dict):
                writer.add_scalars(key, value, step)
                continue
            try:
                if hasattr(value, "item"):  # tensors and numpy scalars
                    value = value.item()
                writer.add_scalar(key, value, step)
            except Exception as exc:  # SummaryWriter raises assorted types for bad values
                raise ValueError(
                    f"TensorBoardLogger cannot log {key!r}: value {value!r} of type {type(value).__name__} "
                    "is not a scalar.\nHINT: log a Python number, a one-element tensor, or a dict of them."
                ) from exc
        if step is not None:
            self._last_step = step if self._last_step is None else max(self._last_step, step)

    @rank_zero_only
    def log_hyperparams(
        self, params: Mapping[str, Any] | Namespace | None, metrics: Mapping[str, Any] | float | None = None
    ) -> None:
        """Record hyperparameters for ``hparams.yaml`` and TensorBoard's HParams tab.

        ``metrics`` (a dict or one number, stored as ``hp_metric``) links the hyperparameters to
        results in the HParams tab; without it ``hp_metric = -1`` is logged when
        ``default_hp_metric`` is True, as Lightning does.
        """
        params = convert_params(params)
        self.hparams.update(params)
        self._hparams_dirty = True
        flat = sanitize_params(flatten_dict(params))

        if metrics is None:
            metric_dict: dict[str, Any] = {"hp_metric": -1} if self._default_hp_metric else {}
        elif isinstance(metrics, Mapping):
            metric_dict = dict(metrics)
        else:
            metric_dict = {"hp_metric": metrics}
        if not metric_dict:
            return
        self.log_metrics(metric_dict, 0)
        from torch.utils.tensorboard.summary import hparams

        experiment, start, end = hparams(flat, metric_dict)
        file_writer = self.experiment._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Add ``model``'s graph, traced with ``input_array`` or ``model.example_input_array``."""
        if not self._log_graph:
            return
        input_array = getattr(model, "example_input_array", None) if input_array is None else input_array
        if input_array is None:
            rank_zero_warn(
                "Could not log computational graph to TensorBoard: The `model.example_input_array` attribute"
                " is not set or `input_array` was not given."
            )
            return
        import torch

        if not isinstance(input_array, (torch.Tensor, tuple)):
            rank_zero_warn(
                "Could not log computational graph to TensorBoard: The `input_array` or `model.example_input_array`"
                f" has type {type(input_array).__name__} which can't be traced by TensorBoard. Make the input array"
                " a tuple representing the positional arguments to the model's `forward()` implementation."
            )
            return
        from fulmen.utilities.example_input import example_input_on_device

        input_array = example_input_on_device(model, input_array)
        self.experiment.add_graph(model, input_array)

    # -- lifecycle -------------------------------------------------------------------------

    @rank_zero_only
    def save(self) -> None:
        """Write ``hparams.yaml`` into the log folder once it exists (and again if hparams changed)."""
        if not self._hparams_dirty:
            return
        log_dir = self.log_dir
        if os.path.isdir(log_dir):
            from fulmen.utilities.parsing import save_hparams_to_yaml

            save_hparams_to_yaml(os.path.join(log_dir, self.NAME_HPARAMS_FILE), self.hparams)
            self._hparams_dirty = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush and close the writer; on success also make sure ``hparams.yaml`` is written."""
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()
            self._experiment = None  # a later use (e.g. trainer.test after fit) reopens the folder
        if status == "success":
            self.save()

    def state_dict(self) -> dict[str, Any]:
        """Name, version and last logged step; flushes pending events so the file matches the checkpoint."""
        if self._experiment is not None:
            self._experiment.flush()
        return {**super().state_dict(), "last_step": self._last_step}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue writing into the checkpointed run's version folder (where ``_resumed_version``
        allows), hiding events logged after it."""
        version = self._resumed_version(state_dict)
        if version is None:
            return
        if self._experiment is not None and version != self._version:
            # Opened too early on a fresh version: reopen in the resumed one.
            self._experiment.close()
            self._experiment = None
        self._version = version
        last_step = state_dict.get("last_step")
        self._last_step = last_step
        self._purge_step = None if last_step is None else int(last_step) + 1

    def __getstate__(self) -> dict[str, Any]:
        # SummaryWriter holds a thread and a file; a pickled logger (spawned ranks) reopens lazily.
        state = self.__dict__.copy()
        state["_experiment"] = None
        return state
