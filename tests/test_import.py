"""Import cost, checked structurally: the public API must not drag heavy optional modules in.

Timing lives in ``bench/import_time.py``; here each check runs a fresh interpreter and compares
``sys.modules`` with what a plain ``import torch`` loads (torch itself imports ``tqdm`` through
``torch.hub``, so a module already loaded by torch cannot count against fulmen).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "tensorboard", "torch.utils.tensorboard", "tqdm", "yaml", "submitit", "torchx", "torch._dynamo", "psutil",
    "mlflow", "wandb", "torchmetrics",
]  # fmt: skip
# fulmen's own wrappers around heavy packages: loading them means the heavy import happened too.
FULMEN_HEAVY_WRAPPERS = ["fulmen.callbacks._tqdm"]

PROBE = """
import json, sys
{statements}
print(json.dumps(sorted(m for m in {names!r} if m in sys.modules)))
"""


def _loaded_after(statements: str, env: dict[str, str], names: list[str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(statements=statements, names=names)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def torch_baseline() -> set[str]:
    import os

    from tests.conftest import REPO_ROOT

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return set(_loaded_after("import torch", env, HEAVY))


def test_public_api_does_not_import_heavy_modules(subprocess_env: dict[str, str], torch_baseline: set[str]) -> None:
    statements = (
        "import fulmen\n"
        "import fulmen.callbacks, fulmen.loggers\n"
        "fulmen.Trainer\n"
        "fulmen.LightningModule\n"
    )
    loaded = set(_loaded_after(statements, subprocess_env, HEAVY + FULMEN_HEAVY_WRAPPERS))
    assert loaded - torch_baseline == set()


def test_logger_progress_and_summary_classes_load_without_their_backends(
    subprocess_env: dict[str, str], torch_baseline: set[str]
) -> None:
    # The classes a Trainer builds by default are importable without tensorboard/tqdm/yaml:
    # those load when a writer, a bar or an hparams.yaml is first created.
    statements = (
        "import fulmen as pl\n"
        "pl.loggers.TensorBoardLogger('unused'); pl.loggers.CSVLogger('unused')\n"
        "pl.callbacks.TQDMProgressBar(); pl.callbacks.ModelSummary()\n"
        "pl.utilities.rank_zero_only; pl.utilities.ModelSummary; pl.seed_everything\n"
        "from fulmen.utilities.parsing import save_hparams_to_yaml\n"
    )
    loaded = set(_loaded_after(statements, subprocess_env, HEAVY + FULMEN_HEAVY_WRAPPERS))
    assert loaded - torch_baseline == set()


def test_bare_import_fulmen_does_not_import_torch(subprocess_env: dict[str, str]) -> None:
    assert _loaded_after("import fulmen", subprocess_env, ["torch", "fulmen.runtime.trainer"]) == []
