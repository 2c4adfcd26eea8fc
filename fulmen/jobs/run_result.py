"""``result.json``: how a run's fit ended, in its run directory (what ``fulmen sweep results`` ranks).

Written by rank 0 of the runtime at the end of every ``Trainer.fit`` (finished or interrupted)
when the run has a run directory; read by the launcher. Plain JSON::

    {"state": "finished", "global_step": 120, "epoch": 3,
     "metrics": {"val_loss": 0.31, ...},            # the final callback_metrics, as floats
     "checkpoint": {"monitor": "val_loss", "mode": "min", "best_model_score": 0.31, "best_model_path": "..."},
     "log_dir": "/abs/path/of/the/first/logger/version_0"}   # None without a logger (``fulmen report`` reads it)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fulmen.jobs.records import write_private

RESULT_FILE = "result.json"


def write_result(run_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as the run's ``result.json`` (atomically, 0600 like the run's other records)."""
    return write_private(run_dir / RESULT_FILE, json.dumps(result, indent=2, sort_keys=True) + "\n")


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``result.json``, or None when its fit has not ended (or the file is unreadable)."""
    try:
        data = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
