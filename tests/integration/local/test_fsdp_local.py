"""strategy="fsdp" with real processes (2 ranks, gloo, CPU) under ``launch --nproc-per-node 2``:
parameters are DTensor shards during fit, the final weights equal the same run under DDP, the
checkpoint is a full state dict that loads in one process, and a resumed fit ends exactly where
the uninterrupted one does. Each run is bounded at 150 s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import child_env, launch_cmd, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(700)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "fsdp_fit.py"
RUN_TIMEOUT_S = 150  # one 2-rank run; generous: the CPUs are shared


def _fit(tmp: Path, name: str, *args: str) -> dict[str, Any]:
    out = tmp / name
    done = run(launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp / f"run_{name}"), str(SCRIPT),
                          "--out", str(out), *args), child_env(tmp), timeout=RUN_TIMEOUT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    results = [json.loads((out / f"result_rank{r}.json").read_text()) for r in range(2)]
    checkpoint = torch.load(out / "final.ckpt", map_location="cpu", weights_only=False)
    return {"out": out, "results": results, "checkpoint": checkpoint}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fsdp")
    fsdp = _fit(tmp, "fsdp", "--strategy", "fsdp", "--test")
    ddp = _fit(tmp, "ddp", "--strategy", "ddp")
    first = _fit(tmp, "fsdp_epoch1", "--strategy", "fsdp", "--epochs", "1")
    resumed = _fit(tmp, "fsdp_resumed", "--strategy", "fsdp", "--ckpt-path", str(first["out"] / "final.ckpt"))
    return {"fsdp": fsdp, "ddp": ddp, "first": first, "resumed": resumed}


def test_parameters_are_sharded_during_fit(runs: dict[str, dict[str, Any]]) -> None:
    for result in runs["fsdp"]["results"]:
        assert result["strategy"] == "FSDPStrategy"
        # nn.Linear(4, 6): rows split over the 2 ranks
        assert result["during_fit"] == {"param_type": "DTensor", "local_shape": [3, 4], "full_shape": [6, 4]}
    assert runs["ddp"]["results"][0]["during_fit"]["param_type"] == "Parameter"


def test_final_weights_equal_ddp(runs: dict[str, dict[str, Any]]) -> None:
    fsdp, ddp = runs["fsdp"]["checkpoint"], runs["ddp"]["checkpoint"]
    assert fsdp["global_step"] == ddp["global_step"] == 16  # 2 epochs x 64 samples / 2 ranks / batch 4
    assert list(fsdp["state_dict"]) == list(ddp["state_dict"]) == ["net.0.weight", "net.0.bias", "net.2.weight",
                                                                   "net.2.bias"]  # fmt: skip
    for key, value in ddp["state_dict"].items():
        assert type(fsdp["state_dict"][key]) is torch.Tensor  # full tensors, not DTensor shards
        torch.testing.assert_close(fsdp["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    # the optimizer state is full too, in torch.optim's own format (integer parameter ids)
    fsdp_opt, ddp_opt = fsdp["optimizer_states"][0], ddp["optimizer_states"][0]
    assert fsdp_opt["param_groups"][0]["params"] == ddp_opt["param_groups"][0]["params"] == [0, 1, 2, 3]
    for index, state in ddp_opt["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(fsdp_opt["state"][index][key], value, rtol=1e-5, atol=1e-6)


def test_same_trainer_tests_after_fit(runs: dict[str, dict[str, Any]]) -> None:
    """trainer.test(model) after fit: the shards' process group is still there; the loss is the full data's."""
    x, y = data_module().data().tensors
    state = runs["fsdp"]["checkpoint"]["state_dict"]
    hidden = torch.tanh(x @ state["net.0.weight"].T + state["net.0.bias"])
    expected = torch.nn.functional.mse_loss(hidden @ state["net.2.weight"].T + state["net.2.bias"], y).item()
    for result in runs["fsdp"]["results"]:
        assert result["test"][0]["test_loss"] == pytest.approx(expected, rel=1e-5)


def data_module() -> Any:
    """The training script as a module (its Net and data)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fsdp_fit", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_checkpoint_loads_in_one_process(runs: dict[str, dict[str, Any]]) -> None:
    script = data_module()

    class Loaded(script.Net):  # type: ignore[misc, name-defined]
        def __init__(self, hidden: int = 6) -> None:
            super().__init__(hidden)
            self.configure_model()  # load_from_checkpoint does not call configure_model (as in Lightning)

    model = Loaded.load_from_checkpoint(runs["fsdp"]["out"] / "final.ckpt")
    assert model.hparams.hidden == 6
    for key, value in runs["fsdp"]["checkpoint"]["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value)


def test_resume_is_exact(runs: dict[str, dict[str, Any]]) -> None:
    assert runs["first"]["checkpoint"]["global_step"] == 8
    resumed, uninterrupted = runs["resumed"]["checkpoint"], runs["fsdp"]["checkpoint"]
    assert resumed["global_step"] == uninterrupted["global_step"] == 16
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    for index, state in uninterrupted["optimizer_states"][0]["state"].items():
        for key, value in state.items():
            assert torch.equal(resumed["optimizer_states"][0]["state"][index][key], value), (index, key)
