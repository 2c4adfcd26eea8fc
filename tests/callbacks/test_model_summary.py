"""ModelSummary callback: prints the table at fit start on rank zero only."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fulmen.callbacks.model_summary import ModelSummary


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(8, 4)
        self.decoder = nn.Linear(4, 8)
        self.example_input_array = torch.zeros(2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _logged(caplog: pytest.LogCaptureFixture, callback: ModelSummary, is_global_zero: bool) -> str:
    with caplog.at_level(logging.INFO, logger="fulmen"):
        callback.on_fit_start(SimpleNamespace(is_global_zero=is_global_zero), Net())
    return caplog.text


def test_table_is_logged_at_fit_start(caplog: pytest.LogCaptureFixture) -> None:
    text = _logged(caplog, ModelSummary(), is_global_zero=True)
    assert "| Name    | Type   | Params | Mode  | FLOPs | In sizes | Out sizes" in text
    assert "0 | encoder | Linear | 36     | train | 128   | [2, 8]   | [2, 4]" in text
    assert "76        Total params" in text


def test_nothing_on_other_ranks_or_with_depth_zero(caplog: pytest.LogCaptureFixture) -> None:
    assert _logged(caplog, ModelSummary(), is_global_zero=False) == ""
    assert _logged(caplog, ModelSummary(max_depth=0), is_global_zero=True) == ""


def test_bad_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_depth=-3"):
        ModelSummary(max_depth=-3)


@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_summary_under_a_trainer_casts_the_example_input(precision: str, caplog: pytest.LogCaptureFixture) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(8, 2)
            self.example_input_array = torch.zeros(2, 8)  # float32 while the weights are not

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).float().pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

    trainer = pl.Trainer(max_steps=1, precision=precision, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="fulmen"):
        trainer.fit(Module(), DataLoader(TensorDataset(torch.randn(4, 8)), batch_size=2))
    assert "| [2, 8]   | [2, 2]" in caplog.text
