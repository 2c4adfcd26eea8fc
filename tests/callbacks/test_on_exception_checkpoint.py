"""OnExceptionCheckpoint: the file a failed fit leaves, that it loads and resumes exactly, and
that a successful run removes it. Lightning's counterpart is the compat scenario
``on_exception_checkpoint``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import Checkpoint, ModelCheckpoint, OnExceptionCheckpoint
from fulmen.runtime.checkpoint import load_checkpoint


class Regression(pl.LightningModule):
    def __init__(self, fail_at: tuple[int, int] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(3, 1)
        self.fail_at = fail_at

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if (self.current_epoch, batch_idx) == self.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    return DataLoader(TensorDataset(torch.randn(12, 3, generator=g), torch.randn(12, 1, generator=g)), batch_size=3,
                      shuffle=True, generator=torch.Generator().manual_seed(2))  # fmt: skip


def _trainer(root: Path, callbacks: list[Any]) -> pl.Trainer:
    return pl.Trainer(default_root_dir=root, max_epochs=3, logger=False, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False)  # fmt: skip


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="The filename cannot be empty.\nHINT"):
        OnExceptionCheckpoint("ckpts", filename="")
    with pytest.raises(TypeError, match=r"dirpath=None.*\nHINT"):
        OnExceptionCheckpoint(None)  # type: ignore[arg-type]
    assert OnExceptionCheckpoint(Path("a"), filename="crash").ckpt_path == str(Path("a") / "crash.ckpt")


def test_is_a_checkpoint_callback_like_model_checkpoint(tmp_path: Path) -> None:
    assert issubclass(OnExceptionCheckpoint, Checkpoint) and issubclass(ModelCheckpoint, Checkpoint)
    callback = OnExceptionCheckpoint(tmp_path)
    trainer = _trainer(tmp_path, [callback])
    assert trainer.checkpoint_callback is callback  # no default ModelCheckpoint added, as in Lightning


def test_failed_fit_leaves_a_file_that_resumes_to_the_same_weights(tmp_path: Path) -> None:
    uninterrupted = Regression()
    _trainer(tmp_path / "a", []).fit(uninterrupted, _loader())

    callback = OnExceptionCheckpoint(tmp_path / "exc")
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(tmp_path / "b", [callback]).fit(Regression(fail_at=(1, 2)), _loader())
    saved = load_checkpoint(callback.ckpt_path)
    assert (saved["epoch"], saved["global_step"]) == (1, 6)  # 4 batches of epoch 0, 2 of epoch 1
    assert Regression.load_from_checkpoint(callback.ckpt_path).layer.weight.shape == (1, 3)

    resumed = Regression()
    trainer = _trainer(tmp_path / "b", [OnExceptionCheckpoint(tmp_path / "exc")])
    trainer.fit(resumed, _loader(), ckpt_path=callback.ckpt_path)
    assert trainer.global_step == 12
    for a, b in zip(uninterrupted.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not Path(callback.ckpt_path).exists(), "a successful run removes the stale file"


def test_a_later_failure_overwrites_the_file(tmp_path: Path) -> None:
    callback = OnExceptionCheckpoint(tmp_path)
    for fail_at, step in (((0, 1), 1), ((2, 0), 8)):
        with pytest.raises(RuntimeError):
            _trainer(tmp_path, [callback]).fit(Regression(fail_at=fail_at), _loader())
        assert load_checkpoint(callback.ckpt_path)["global_step"] == step
