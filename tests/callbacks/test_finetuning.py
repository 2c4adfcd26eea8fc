"""BaseFinetuning's helpers (flatten, freeze, make_trainable, filter_params, param groups) and
BackboneFinetuning in a fit: what trains when, the backbone's lr, and an exact resume.

The same fits under Lightning 2.6 are compared in tests/compat (scenario ``finetuning``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import BackboneFinetuning, BaseFinetuning, ModelCheckpoint

QUIET = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
         "logger": False, "enable_checkpointing": False}  # fmt: skip


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Sequential(nn.Linear(3, 2)))


def test_flatten_modules_gives_leaves_of_modules_lists_and_module_dicts() -> None:
    net = _net()
    flat = BaseFinetuning.flatten_modules([net[0], nn.ModuleDict({"a": net[2]})])
    assert flat == [net[0], net[2][0]]
    assert BaseFinetuning.flatten_modules(net) == [net[0], net[1], net[2][0]]


@pytest.mark.parametrize("train_bn", [True, False])
def test_freeze_leaves_batch_norm_trainable_only_with_train_bn(train_bn: bool) -> None:
    net = _net()
    BaseFinetuning.freeze(net, train_bn=train_bn)
    assert not any(p.requires_grad for p in net[0].parameters()) and not net[2][0].weight.requires_grad
    assert all(p.requires_grad == train_bn for p in net[1].parameters())
    assert net[1].track_running_stats == train_bn
    assert list(BaseFinetuning.filter_params(net, requires_grad=False)) == (
        [net[0].weight, net[0].bias, net[2][0].weight, net[2][0].bias]
        if train_bn
        else [net[0].weight, net[0].bias, net[1].weight, net[1].bias, net[2][0].weight, net[2][0].bias]
    )
    BaseFinetuning.make_trainable(net)
    assert all(p.requires_grad for p in net.parameters()) and net[1].track_running_stats


def test_unfreeze_and_add_param_group_divides_the_first_groups_lr_and_skips_known_params() -> None:
    net = _net()
    BaseFinetuning.freeze(net[0])
    optimizer = torch.optim.SGD(net[2].parameters(), lr=0.5)
    BaseFinetuning.unfreeze_and_add_param_group(net[0], optimizer, initial_denom_lr=5.0)
    assert len(optimizer.param_groups) == 2
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1)
    assert optimizer.param_groups[1]["params"] == [net[0].weight, net[0].bias]
    with pytest.warns(UserWarning, match="already exist within another group of this optimizer"):
        BaseFinetuning.unfreeze_and_add_param_group(net[2], optimizer, lr=1.0)
    assert len(optimizer.param_groups) == 2  # nothing new to add


def test_a_subclass_that_overrides_nothing_says_what_to_override(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match=r"BaseFinetuning must override freeze_before_training\(pl_module\)"):
        BaseFinetuning().freeze_before_training(_Finetuned())
    with pytest.raises(NotImplementedError, match=r"must override finetune_function\(pl_module, epoch, optimizer\)"):
        BaseFinetuning().finetune_function(_Finetuned(), 0, torch.optim.SGD(_Finetuned().parameters(), lr=0.1))


class _Finetuned(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.backbone(x)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self(x), y)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(8, 4, generator=generator), torch.randn(8, 1, generator=generator))
        return DataLoader(data, batch_size=2)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()), lr=0.01)


class _Groups(pl.Callback):
    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}
        self.backbone_trains: dict[int, bool] = {}

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.lrs[trainer.current_epoch] = [group["lr"] for group in trainer.optimizers[0].param_groups]
        self.backbone_trains[trainer.current_epoch] = pl_module.backbone[0].weight.requires_grad


def test_backbone_trains_from_its_epoch_with_a_growing_aligned_lr(tmp_path: Path) -> None:
    groups, model = _Groups(), _Finetuned()
    callback = BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_ratio_lr=0.25)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=4, callbacks=[callback, groups], **QUIET)
    before = model.backbone[0].weight.detach().clone()
    trainer.fit(model)
    assert groups.backbone_trains == {0: False, 1: True, 2: True, 3: True}
    # 0.01 * 0.25 at the unfreezing, then x2 per epoch, capped at the head's 0.01 (should_align)
    assert groups.lrs == {0: [0.01], 1: [0.01, 0.0025], 2: [0.01, 0.005], 3: [0.01, 0.01]}
    assert not torch.equal(before, model.backbone[0].weight)


def test_missing_backbone_fails_in_setup(tmp_path: Path) -> None:
    class NoBackbone(_Finetuned):
        def __init__(self) -> None:
            super().__init__()
            del self.backbone

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x)

    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[BackboneFinetuning()], **QUIET)
    with pytest.raises(AttributeError, match="backbone"):  # Lightning's error too (freeze in setup)
        trainer.fit(NoBackbone())


def test_resumed_after_the_unfreezing_continues_exactly(tmp_path: Path) -> None:
    every_epoch = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    whole, resumed = _Finetuned(), _Finetuned()
    flags = {**QUIET, "enable_checkpointing": True}
    pl.Trainer(default_root_dir=tmp_path, max_epochs=4, callbacks=[BackboneFinetuning(1), every_epoch],
               **flags).fit(whole)  # fmt: skip
    groups = _Groups()
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=4, callbacks=[BackboneFinetuning(1), groups], **QUIET)
    trainer.fit(resumed, ckpt_path=str(tmp_path / "ckpts" / "epoch=1.ckpt"))
    assert groups.lrs == {2: [0.01, 0.002], 3: [0.01, 0.004]}
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)
