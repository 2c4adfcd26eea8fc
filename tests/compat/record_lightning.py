"""Record PyTorch Lightning's behaviour in the compatibility scenarios as reference JSON.

Run once, by hand, in a scratch venv that has the real library (never a project dependency):

    python3 -m venv /tmp/plvenv
    /tmp/plvenv/bin/pip install torch==2.13.0 "pytorch-lightning==2.6.*" tensorboard
    /tmp/plvenv/bin/python tests/compat/record_lightning.py [scenario ...]

Each scenario runs in a fresh temporary folder and its observations go to
``tests/compat/reference/<scenario>.json`` with the library versions that produced them.
The output is stable (sorted keys, relative paths, rounded floats), so re-recording with the
same versions gives an identical file and a version change shows up as a readable git diff.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def record(names: list[str]) -> None:
    """Run the named scenarios (all when empty) under Lightning and write their JSON files."""
    try:
        import pytorch_lightning as pl
    except ImportError as error:
        raise SystemExit(
            f"record_lightning.py needs PyTorch Lightning in the running interpreter ({sys.executable}): {error}\n"
            "HINT: run it with the scratch venv's python (see this module's docstring), never the project's .venv"
        ) from error
    import torch

    from tests.compat.scenarios import SCENARIOS

    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; expected some of {sorted(SCENARIOS)}")
    REFERENCE_DIR.mkdir(exist_ok=True)
    for name in names or sorted(SCENARIOS):
        with tempfile.TemporaryDirectory(prefix=f"pl-{name}-") as root:
            observed = SCENARIOS[name](pl, Path(root))
        document = {
            "scenario": name,
            "recorded_with": {"pytorch_lightning": pl.__version__, "torch": torch.__version__.split("+")[0]},
            "observed": observed,
        }
        path = REFERENCE_DIR / f"{name}.json"
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    record(sys.argv[1:])
