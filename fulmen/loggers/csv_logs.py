"""``CSVLogger``: ``metrics.csv`` and ``hparams.yaml`` in ``save_dir/name/version_N/``.

The file matches Lightning 2.x: one row per ``log_metrics`` call (the Trainer makes one call per
logging step holding every metric of that step, and one per epoch end), columns sorted by name
and including ``step`` (and ``epoch`` when the Trainer sends it), empty cells for metrics a row
does not have. Rows are buffered and written every ``flush_logs_every_n_steps`` steps and at
``save()`` / ``finalize()``; when a new metric name appears, the file is rewritten with the
wider header.

On resume (``load_state_dict``) the logger reopens the same version folder, keeps the rows that
were on disk when the checkpoint was taken and drops any written after it, then appends.
"""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from fulmen.loggers.logger import VersionedFolderLogger, rank_zero_experiment
from fulmen.loggers.params import add_prefix, convert_params
from fulmen.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["CSVLogger", "ExperimentWriter"]


class ExperimentWriter:
    """Buffers metric rows and writes ``metrics.csv`` and ``hparams.yaml`` into ``log_dir``.

    ``resume_rows``: continue an existing ``metrics.csv``, keeping only its first ``resume_rows``
    data rows (the ones written before the checkpoint); None starts a fresh file.
    """

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str, resume_rows: int | None = None) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.rows_written = 0
        self._file_started = False
        if resume_rows is None:
            if os.path.isdir(log_dir) and os.listdir(log_dir):
                rank_zero_warn(
                    f"Experiment logs directory {log_dir} exists and is not empty."
                    " Previous log files in this directory will be deleted when the new ones are saved!"
                )
        else:
            self._continue_file(resume_rows)
        os.makedirs(log_dir, exist_ok=True)

    def _continue_file(self, keep_rows: int) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as file:
            reader = csv.DictReader(file)
            self.metrics_keys = list(reader.fieldnames or [])
            rows = [row for _, row in zip(range(keep_rows), reader)]
        self._write_all(rows)
        self.rows_written = len(rows)
        self._file_started = True

    def log_hparams(self, params: Mapping[str, Any]) -> None:
        """Merge hyperparameters and write ``hparams.yaml`` now (only then: Lightning writes none
        for a run that logged no hyperparameters)."""
        from fulmen.utilities.parsing import save_hparams_to_yaml

        self.hparams.update(params)
        save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def log_metrics(self, metrics_dict: Mapping[str, Any], step: int | None = None) -> None:
        """Buffer one row: the metrics (tensors as Python numbers) plus ``step``."""
        if step is None:
            step = len(self.metrics)
        row = {key: value.item() if hasattr(value, "item") else value for key, value in metrics_dict.items()}
        row["step"] = step
        self.metrics.append(row)

    def save(self) -> None:
        """Append the buffered rows to ``metrics.csv``."""
        if not self.metrics:
            return
        new_keys = {key for row in self.metrics for key in row} - set(self.metrics_keys)
        if new_keys:
            self.metrics_keys = sorted([*self.metrics_keys, *new_keys])
        if not self._file_started or new_keys:
            # A new column changes the header: rewrite what is on disk under the wider header.
            old_rows = self._read_rows() if self._file_started else []
            self._write_all(old_rows + self.metrics)
            self._file_started = True
        else:
            with open(self.metrics_file_path, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=self.metrics_keys).writerows(self.metrics)
        self.rows_written += len(self.metrics)
        self.metrics = []

    def _read_rows(self) -> list[dict[str, Any]]:
        with open(self.metrics_file_path, newline="") as file:
            return list(csv.DictReader(file))

    def _write_all(self, rows: list[dict[str, Any]]) -> None:
        # Write the whole file next to the old one and rename, so a crash never leaves half a file.
        tmp_path = self.metrics_file_path + ".tmp"
        with open(tmp_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp_path, self.metrics_file_path)


class CSVLogger(VersionedFolderLogger):
    """Log to ``save_dir/name/version_N/metrics.csv`` (and ``hparams.yaml``), like Lightning's CSVLogger.

    Args:
        save_dir, name, version: where ``metrics.csv`` goes, ``save_dir/name/version_N`` (see
            ``VersionedFolderLogger``: None picks the next free ``version_N``).
        prefix: prepended to every metric name, joined with ``-``.
        flush_logs_every_n_steps: write buffered rows to disk when ``(step + 1)`` is a multiple of this.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        if flush_logs_every_n_steps < 1:
            raise ValueError(
                f"CSVLogger(flush_logs_every_n_steps={flush_logs_every_n_steps}) must be >= 1.\n"
                "HINT: use 1 to write every step, or a larger number to write less often."
            )
        super().__init__(save_dir, name, version)
        self._prefix = prefix
        self._flush_logs_every_n_steps = flush_logs_every_n_steps
        self._experiment: ExperimentWriter | None = None
        self._resume_rows: int | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The ``ExperimentWriter``, created (with the log folder) on first access on rank zero."""
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ExperimentWriter(self.log_dir, resume_rows=self._resume_rows)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None) -> None:
        """Record hyperparameters in ``hparams.yaml``."""
        self.experiment.log_hparams(convert_params(params))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Buffer one row; flush to disk every ``flush_logs_every_n_steps`` steps."""
        metrics = add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        experiment = self.experiment
        if step is None:
            step = len(experiment.metrics)
        experiment.log_metrics(metrics, step)
        if (step + 1) % self._flush_logs_every_n_steps == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        """Write the buffered rows of ``metrics.csv``."""
        self.experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is buffered (a no-op when nothing was ever logged)."""
        if self._experiment is None:
            return
        self.save()

    def state_dict(self) -> dict[str, Any]:
        """Name, version and the number of rows on disk (buffered rows are written first)."""
        rows = None
        if self._experiment is not None:
            self._experiment.save()
            rows = self._experiment.rows_written
        return {**super().state_dict(), "rows_written": rows}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue in the checkpointed version folder (where ``_resumed_version`` allows), dropping
        rows written after the checkpoint."""
        version = self._resumed_version(state_dict)
        if version is None:
            return
        if self._experiment is not None:
            if version != self._version:
                rank_zero_warn(
                    f"CSVLogger was already writing to {self.log_dir} when the resume state for version"
                    f" {version!r} arrived; continuing in the resumed version.",
                )
            self._experiment = None
        self._version = version
        rows = state_dict.get("rows_written")
        self._resume_rows = int(rows) if rows is not None else 0
