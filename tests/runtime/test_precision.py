"""Precision flags: parameter dtype, autocast, fp16 without CUDA, GradScaler state."""

from __future__ import annotations

import pytest
import torch

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime.precision import PrecisionPlugin, normalize_precision
from tests.core.models import TRAINER_QUIET, BoringModel


def test_precision_names_are_normalised_and_unknown_ones_rejected() -> None:
    assert [normalize_precision(p) for p in (32, "32", 64, "bf16", "16")] == [
        "32-true", "32-true", "64-true", "bf16-mixed", "16-mixed",
    ]  # fmt: skip
    with pytest.raises(MisconfigurationException, match="expected one of"):
        normalize_precision("8-true")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_fp16_mixed_without_cuda_is_an_error_before_training() -> None:
    with pytest.raises(MisconfigurationException, match="needs a CUDA device.*\n.*HINT.*bf16-mixed"):
        pl.Trainer(precision="16-mixed", **TRAINER_QUIET)


class DtypeSpy(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.dtype, torch.dtype, torch.dtype]] = []

    def training_step(self, batch, batch_idx):
        out = self(batch)
        self.seen.append((self.layer.weight.dtype, batch.dtype, out.dtype))
        return self.loss(out.float())


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("32-true", (torch.float32, torch.float32, torch.float32)),
        ("64-true", (torch.float64, torch.float64, torch.float64)),
        ("bf16-mixed", (torch.float32, torch.float32, torch.bfloat16)),
        ("bf16-true", (torch.bfloat16, torch.bfloat16, torch.bfloat16)),
    ],
)
def test_each_precision_trains_in_its_dtypes(precision, expected) -> None:
    model = DtypeSpy()
    trainer = pl.Trainer(precision=precision, max_steps=2, limit_val_batches=0, accelerator="cpu", **TRAINER_QUIET)
    trainer.fit(model)
    assert model.seen == [expected, expected]
    assert trainer.precision == precision
    assert trainer.precision_plugin.state_dict() == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 mixed precision needs CUDA")
def test_fp16_mixed_scales_the_loss_and_checkpoints_the_scaler() -> None:
    model = DtypeSpy()
    trainer = pl.Trainer(precision="16-mixed", max_steps=3, limit_val_batches=0, accelerator="gpu", **TRAINER_QUIET)
    trainer.fit(model)
    assert model.seen[0] == (torch.float32, torch.float32, torch.float16)
    state = trainer.precision_plugin.state_dict()
    assert state["scale"] > 0
    fresh = PrecisionPlugin("16-mixed", torch.device("cuda"))
    fresh.load_state_dict(state)
    assert fresh.state_dict()["scale"] == state["scale"]


def test_precision_none_is_lightnings_default_full_precision() -> None:
    # Lightning's signature default; configs written by LightningCLI print `precision: null`
    assert pl.Trainer(precision=None, **TRAINER_QUIET).precision == "32-true"
