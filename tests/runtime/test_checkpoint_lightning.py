"""PyTorch Lightning interop: real Lightning 2.6.6 files load and resume here; ours carry its counters.

The two files in ``data/`` were written by PyTorch Lightning 2.6.6 (see
``data/make_lightning_checkpoints.py``): one at the end of epoch 1 (step 8), one by
``every_n_train_steps=6`` in the middle of epoch 1 (2 of 4 batches done). The same run under
fulmen writes the same ``loops`` entry (our own loop state aside). By hand, with
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
from fulmen.runtime.checkpoint_lightning import SchedulerCount, ValidationPlan, fit_state_from_lightning, lightning_fit_progress

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
    assert sorted(checkpoint["loops"]) == ["fit_loop", "predict_loop", "test_loop", "validate_loop"]
    loop = checkpoint["loops"]["fit_loop"]
    # after the last epoch: three epochs done, none started (what Lightning's own loop says then)
    assert loop["epoch_progress"]["current"] == {"ready": 3, "started": 3, "processed": 3, "completed": 3}
    # ... and the epoch loop still holds the last epoch's counts, as Lightning's does after fit
    assert loop["epoch_loop.batch_progress"]["current"] == {"ready": 4, "started": 4, "processed": 4, "completed": 4}
    assert loop["epoch_loop.batch_progress"]["is_last_batch"] is True
    step = loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]
    assert step == {"total": {"ready": 12, "completed": 12}, "current": {"ready": 4, "completed": 4}}
    # StepLR with interval "step": one scheduler step per optimizer step
    assert loop["epoch_loop.scheduler_progress"]["total"] == {"ready": 12, "completed": 12}
    assert loop["epoch_loop.state_dict"] == {"_batches_that_stepped": 12}
    assert cs.decode_arrays(loop["state_dict"]["fulmen"])["global_step"] == 12


class Validated(Plain):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))


def _fit_as_make_lightning_checkpoints(root: Path) -> None:
    """``data/make_lightning_checkpoints.py``'s run, under fulmen."""
    from fulmen.callbacks.model_checkpoint import ModelCheckpoint
    from fulmen.runtime.trainer import Trainer

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    callbacks = [
        ModelCheckpoint(dirpath=root / "ckpts", monitor="val_loss", save_last=True),
        ModelCheckpoint(dirpath=root / "steps", every_n_train_steps=6, save_top_k=-1),
    ]
    trainer = Trainer(max_epochs=2, callbacks=callbacks, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(root), num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(Validated(), DataLoader(data, batch_size=8, shuffle=True), DataLoader(data, batch_size=16))


def _without_our_state(loops: dict[str, Any]) -> dict[str, Any]:
    fit_loop = dict(loops["fit_loop"])
    state = dict(fit_loop["state_dict"])
    assert "global_step" in cs.decode_arrays(state.pop("fulmen"))
    return {**loops, "fit_loop": {**fit_loop, "state_dict": state}}


def test_loops_entry_is_lightnings_for_the_same_run(tmp_path: Path) -> None:
    """The same run as the 2.6.6 files: every loop, key and counter is Lightning's, our own
    state aside (``loops.fit_loop.state_dict.fulmen``, where Lightning's FitLoop keeps extras)."""
    _fit_as_make_lightning_checkpoints(tmp_path)
    ours = _without_our_state(ck.load_checkpoint(tmp_path / "ckpts" / "last.ckpt")["loops"])
    assert ours == ck.load_checkpoint(EPOCH_END)["loops"]

    ours = _without_our_state(ck.load_checkpoint(tmp_path / "steps" / "epoch=1-step=6.ckpt")["loops"])
    # saved from on_train_batch_end: that batch is processed, not yet completed, in both
    assert ours == ck.load_checkpoint(MID_EPOCH)["loops"]


def test_older_files_with_our_state_beside_the_counters_still_resume() -> None:
    state = {"epoch": 1, "batch_idx": 2, "global_step": 6, "optimizer_steps": [6]}
    checkpoint = {"fulmen_version": "0", "loops": {"fit_loop": {**lightning_fit_progress(state, 4, True), "fulmen": state}}}
    assert cs._fit_loop_state(None, checkpoint) == state
    checkpoint["loops"]["fit_loop"]["state_dict"] = {"fulmen": {**state, "epoch": 2}}
    assert cs._fit_loop_state(None, checkpoint)["epoch"] == 2


def test_scheduler_and_validation_progress_follow_lightnings_rules() -> None:
    every_2nd_epoch = [SchedulerCount("epoch", 2, None)]
    val = ValidationPlan(batches_per_run=3, val_check_batch=float("inf"), check_every_n_epoch=2)
    # epoch 1 (its training part ended): the scheduler steps (2nd epoch) and validation runs
    loop = lightning_fit_progress(
        {"epoch": 1, "batch_idx": 4, "total_batch_idx": 8, "global_step": 8}, 4, True,
        schedulers=every_2nd_epoch, validation=val,
    )  # fmt: skip
    assert loop["epoch_loop.scheduler_progress"] == {
        "total": {"ready": 1, "completed": 1}, "current": {"ready": 1, "completed": 1}
    }  # fmt: skip
    assert loop["epoch_loop.val_loop.batch_progress"]["total"]["completed"] == 3
    assert loop["epoch_loop.val_loop.batch_progress"]["is_last_batch"] is True
    # middle of epoch 2: nothing stepped or validated yet in it; the last run is still current
    loop = lightning_fit_progress(
        {"epoch": 2, "batch_idx": 1, "total_batch_idx": 9, "global_step": 9}, 4, True,
        schedulers=every_2nd_epoch, validation=val,
    )  # fmt: skip
    assert loop["epoch_loop.scheduler_progress"]["current"] == {"ready": 0, "completed": 0}
    assert loop["epoch_loop.scheduler_progress"]["total"] == {"ready": 1, "completed": 1}
    val_progress = loop["epoch_loop.val_loop.batch_progress"]
    assert (val_progress["total"]["completed"], val_progress["current"]["completed"]) == (0, 3)
    # manual optimization: Lightning counts the steps in optim_step_progress only
    loop = lightning_fit_progress({"epoch": 0, "batch_idx": 2, "global_step": 2}, 4, False)
    assert loop["epoch_loop.manual_optimization.optim_step_progress"]["total"]["completed"] == 2
    assert loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]["step"]["total"]["completed"] == 0
