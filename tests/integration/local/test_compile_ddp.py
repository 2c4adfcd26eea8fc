"""A compiled LightningModule under DDP with real processes (2 ranks, gloo, CPU, ``launch``).

``torch.compile(model)`` goes to the Trainer; DDP wraps the original module and its compiled
``training_step`` runs inside DDP's forward, so the gradient all-reduce works as for an eager
module: both ranks end with the weights of a one-process run over the same batches, the
``sync_dist`` metrics agree, and the checkpoint holds the module's own keys.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import child_env, launch_cmd, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "compile_fit.py"
RUN_TIMEOUT_S = 150  # one 2-rank run with compilation on each rank; the CPUs are shared
EPOCHS = 2


def _script_module() -> Any:
    spec = importlib.util.spec_from_file_location("compile_fit", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("compile_ddp")
    out = tmp / "out"
    done = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp / "run"), str(SCRIPT), "--out", str(out),
                          "--epochs", str(EPOCHS)), child_env(tmp), timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    results = [json.loads((out / f"result_rank{rank}.json").read_text()) for rank in range(2)]
    return {"out": out, "results": results}


def test_ddp_wraps_the_original_module_and_its_steps_are_compiled_on_each_rank(compiled_run: dict[str, Any]) -> None:
    for rank, result in enumerate(compiled_run["results"]):
        assert (result["global_rank"], result["world_size"]) == (rank, 2)
        assert result["lightning_module_is_original"] and result["wrapped_is_original"]
        assert result["model_type"] == "DistributedDataParallel"
        assert result["started_on"] == ["CompiledRegression"]
        assert result["graphs"] > 0
        assert result["fallback_warnings"] == []
        assert result["global_step"] == EPOCHS * 64 // (2 * 4)


def test_gradients_are_averaged_across_ranks_as_for_an_eager_module(compiled_run: dict[str, Any]) -> None:
    r0, r1 = compiled_run["results"]
    assert r0["weights"] == r1["weights"]  # replicas identical
    expected = _script_module().fit_in_one_process(EPOCHS)
    for got, want in zip(r0["weights"], expected, strict=True):
        assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-6), (got, want)


def test_sync_dist_metrics_logged_in_compiled_steps_agree_across_ranks(compiled_run: dict[str, Any]) -> None:
    r0, r1 = compiled_run["results"]
    assert set(r0["metrics"]) == {"train_loss", "val_loss"}
    assert r0["metrics"] == r1["metrics"]


def test_the_checkpoint_holds_the_modules_own_keys_and_loads_into_an_eager_module(compiled_run: dict[str, Any]) -> None:
    script = _script_module()
    checkpoint = torch.load(compiled_run["out"] / "final.ckpt", map_location="cpu", weights_only=True)
    assert sorted(checkpoint["state_dict"]) == sorted(script.CompiledRegression().state_dict())
    loaded = script.CompiledRegression.load_from_checkpoint(compiled_run["out"] / "final.ckpt")
    weights = [p.detach().flatten().tolist() for p in loaded.parameters()]
    assert weights == compiled_run["results"][0]["weights"]
