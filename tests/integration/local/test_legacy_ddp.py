"""Lightning 1.x modules under 2-rank DDP (issue #11): several optimizers with ``optimizer_idx``
train as in one process, which DDP refused before ("parameters that were not used in
producing loss": each optimizer's turn switches the others' parameters off, and 1.9.5's DDP
looked for unused parameters by default)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from .conftest import child_env, launch_cmd, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]
SCRIPT = Path(__file__).resolve().parent / "scripts" / "two_optimizers_1x.py"


def test_two_optimizers_under_ddp_match_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    done = run([sys.executable, str(SCRIPT), str(single), "8"], child_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    done = run(launch_cmd("--nproc-per-node", "2", "--run-root", str(tmp_path / "runs"), str(SCRIPT), str(ddp), "4"),
               child_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (one,) = [json.loads((single / "rank0.json").read_text())]
    r0, r1 = (json.loads((ddp / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert (r0["world"], one["world"]) == (2, 1)
    assert r0["weights"] == r1["weights"]  # replicas identical
    assert r0["global_step"] == one["global_step"] > 0
    for name, value in one["weights"].items():  # both heads moved, each by its own optimizer, as in one process
        assert torch.allclose(torch.tensor(r0["weights"][name]), torch.tensor(value), atol=1e-6), name
    start = json.loads(json.dumps({k: v.tolist() for k, v in _initial().items()}))
    assert all(start[name] != one["weights"][name] for name in start)


def _initial() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    return {f"a.{k}": v for k, v in a.state_dict().items()} | {f"b.{k}": v for k, v in b.state_dict().items()}
