"""PyTorch Lightning interop: real Lightning 2.6.6 files load and resume here; ours carry its counters.

The two files in ``data/`` were written by PyTorch Lightning 2.6.6 (see
``data/make_lightning_checkpoints.py``): one at the end of epoch 1 (step 8), one by
``every_n_train_steps=6`` in the middle of epoch 1 (2 of 4 batches done). By hand, with
Lightning installed in a scratch venv, the reverse was checked too: Lightning's
``fit(ckpt_path=<fulmen file>)`` resumes both kinds at the same epoch, batch and step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fulmen.core.module import LightningModule
from fulmen.runtime import checkpoint as ck
from fulmen.runtime import checkpoint_state as cs
from fulmen.runtime.checkpoint_lightning import fit_state_from_lightning, lightning_fit_progress

DATA = Path(__file__).with_name("data")
EPOCH_END = DATA / "lightning_2_6_6_epoch_end.ckpt"
MID_EPOCH = DATA / "lightning_2_6_6_mid_epoch.ckpt"


class Plain(LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.seen: list[tuple[int, int, int]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.seen.append((self.current_epoch, batch_idx, self.global_step))
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _train_loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8, shuffle=True)


def _fit(model: Plain, ckpt_path: Any, root: Path) -> Any:
    from fulmen.runtime.trainer import Trainer

    trainer = Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    trainer.fit(model, _train_loader(), ckpt_path=ckpt_path)
    return trainer


def test_lightning_files_load_with_the_safe_loader() -> None:
    for path in (EPOCH_END, MID_EPOCH):
        checkpoint = ck.load_checkpoint(path)  # weights_only=True
        assert checkpoint["pytorch-lightning_version"] == "2.6.6"
        model = Plain.load_from_checkpoint(path)
        assert dict(model.hparams) == {"hidden": 8, "lr": 0.05}
        assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("path", "first_batches", "optimizer_steps"),
    [
        (EPOCH_END, [(2, 0, 8), (2, 1, 9)], 4),  # epoch 2 from its first batch
        (MID_EPOCH, [(1, 2, 6), (1, 3, 7)], 6),  # epoch 1 after the 2 batches Lightning ran
    ],
)
def test_fit_resumes_a_lightning_checkpoint_where_lightning_would(
    tmp_path: Path, path: Path, first_batches: list, optimizer_steps: int
) -> None:
    torch.manual_seed(1)
    model = Plain()
    trainer = _fit(model, path, tmp_path)
    assert model.seen[:2] == first_batches
    assert len(model.seen) == optimizer_steps
    assert (trainer.global_step, trainer.current_epoch) == (12, 3)
    saved = ck.load_checkpoint(path)
    # the scheduler continued from Lightning's state: StepLR(2, 0.5) after 12 steps
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**6)
    assert saved["lr_schedulers"][0]["last_epoch"] == saved["global_step"]


def test_translation_round_trip_matches_lightning_counters() -> None:
    for path, num_batches in ((EPOCH_END, 4), (MID_EPOCH, 4)):
        lightning = ck.load_checkpoint(path)
        ours = fit_state_from_lightning(lightning, {}, num_optimizers=1)
        ours.setdefault("total_batch_idx", 0)
        if ours["batch_idx"] == 0:  # epoch end: our file says "epoch e, all its batches done"
            ours = {**ours, "epoch": ours["epoch"] - 1, "batch_idx": num_batches}
        back = lightning_fit_progress(ours, num_batches, automatic=True)
        expected = lightning["loops"]["fit_loop"]
        assert back["epoch_progress"]["current"] == expected["epoch_progress"]["current"]
        assert back["epoch_loop.batch_progress"]["current"]["processed"] == (
            expected["epoch_loop.batch_progress"]["current"]["processed"]
        )
        assert back["epoch_loop.batch_progress"]["is_last_batch"] == expected["epoch_loop.batch_progress"]["is_last_batch"]
        step = back["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"]
        assert step == lightning["global_step"]


def test_our_files_carry_lightning_version_and_counters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Plain()
    trainer = _fit(model, None, tmp_path)
    path = tmp_path / "ours.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = ck.load_checkpoint(path)
    assert checkpoint["pytorch-lightning_version"] == "2.0.0"
    loop = checkpoint["loops"]["fit_loop"]
    # after the last epoch: three epochs done, none started (what Lightning's own loop says then)
    assert loop["epoch_progress"]["current"] == {"ready": 3, "started": 3, "processed": 3, "completed": 3}
    assert loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"] == 12
    assert loop["epoch_loop.state_dict"] == {"_batches_that_stepped": 12}
    assert cs.decode_arrays(loop["fulmen"])["global_step"] == 12
