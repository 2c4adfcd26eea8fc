"""``ExperimentLogger``: a test_tube ``Experiment`` as a Lightning logger (``Trainer(experiment=exp)``).

Scripts of the 0.x era pass ``Trainer(experiment=Experiment(...))``. This adapter turns that
object into a logger so the rest of fulmen sees an ordinary one: metrics go to ``exp.log``
(tfevents + ``metrics.csv``), hyperparameters to ``exp.argparse``, ``save``/``finalize`` to
``exp.save``, and ``experiment`` is the object itself (a ``SummaryWriter``: ``add_image``,
``add_histogram``). Its folder ``save_dir/name/version_N`` is the logger's ``log_dir``, so the
default ModelCheckpoint writes into ``version_N/checkpoints`` and ``last_checkpoint()`` finds
what an earlier run of the same version left there.

Duck-typed on purpose: it accepts test_tube's ``Experiment`` and ``fulmen.compat.Experiment``
alike, and importing it imports neither (test_tube stays optional).
"""

from __future__ import annotations

import glob
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from fulmen.errors import MisconfigurationException
from fulmen.loggers.logger import Logger, rank_zero_experiment
from fulmen.loggers.params import convert_params, flatten_dict
from fulmen.utilities.git import code_commit
from fulmen.utilities.rank_zero import rank_zero_only

__all__ = ["ExperimentLogger", "last_checkpoint"]

_EXPERIMENT_METHODS = ("log", "tag", "argparse", "save", "get_data_path")


class ExperimentLogger(Logger):
    """Log through a test_tube-style ``Experiment`` (test_tube's own or ``fulmen.compat.Experiment``).

    Args:
        experiment: the object the script built; its ``save_dir``/``name``/``version`` fix the folder.

    With ``create_git_tag=True`` on the experiment, the code's commit is recorded as the tag
    ``git_commit``; outside a git repository that is refused (``MisconfigurationException``).
    """

    def __init__(self, experiment: Any) -> None:
        super().__init__()
        missing = [name for name in _EXPERIMENT_METHODS if not callable(getattr(experiment, name, None))]
        if missing:
            raise MisconfigurationException(
                f"Trainer(experiment=...) got a {type(experiment).__name__}, which lacks {', '.join(missing)}; "
                "expected a test_tube Experiment.\nHINT: pass test_tube.Experiment(...) or "
                "fulmen.compat.Experiment(...), or use logger=TensorBoardLogger(save_dir, name, version)."
            )
        self._experiment = experiment
        if getattr(experiment, "create_git_tag", False) and not getattr(experiment, "debug", False):
            commit = code_commit()  # refuses outside a git repository
            if rank_zero_only.rank == 0 and experiment.tags.get("git_commit") != commit:
                experiment.tag({"git_commit": commit})

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The test_tube ``Experiment``: a ``SummaryWriter`` with ``log``/``tag`` on top."""
        return self._experiment

    @property
    def name(self) -> str:
        return str(self._experiment.name)

    @property
    def version(self) -> int:
        return int(self._experiment.version)

    @property
    def log_dir(self) -> str:
        """``save_dir/name/version_N``: the experiment's folder (tfevents are in its ``tf/``)."""
        return os.fspath(self._experiment.get_data_path(self._experiment.name, self._experiment.version))

    @property
    def root_dir(self) -> str:
        return os.path.dirname(self.log_dir)

    @property
    def save_dir(self) -> str:
        """The folder holding ``name/`` (test_tube's own default when the script gave none)."""
        return os.path.dirname(self.root_dir)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """One ``exp.log`` call: scalars into tfevents at ``step`` and a row of ``metrics.csv``."""
        self._experiment.log({key: _plain(value) for key, value in metrics.items()}, global_step=step)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Tag the hyperparameters (flattened, as Lightning's TestTubeLogger did) through ``exp.argparse``."""
        flat = flatten_dict(convert_params(params))
        self._experiment.argparse(Namespace(**flat))

    @rank_zero_only
    def save(self) -> None:
        """Write the experiment's CSV/JSON files and flush its events."""
        self._experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Save and close the writer (a later ``log`` reopens it, as ``SummaryWriter`` does)."""
        self._experiment.save()
        self._experiment.close()

    def state_dict(self) -> dict[str, Any]:
        return {"save_dir": self.save_dir, "name": self.name, "version": self.version}

    def last_checkpoint(self) -> str | None:
        """The checkpoint an earlier run of this version left in ``version_N/checkpoints``, or None."""
        return last_checkpoint(os.path.join(self.log_dir, "checkpoints"))


def last_checkpoint(folder: str) -> str | None:
    """The file to continue from in ``folder``: the newest ``last*.ckpt``, else the newest ``*.ckpt``.

    "Newest" is the modification time: ModelCheckpoint writes its files in training order, and
    with ``save_top_k`` the kept files need not be named in step order.
    """
    files = glob.glob(os.path.join(glob.escape(folder), "*.ckpt"))
    if not files:
        return None
    last = [path for path in files if os.path.basename(path).startswith("last")]
    return max(last or files, key=os.path.getmtime)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
