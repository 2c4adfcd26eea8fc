"""Several optimizers under automatic optimization (Lightning 1.x's ``optimizer_idx``)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime import legacy_optimization
from fulmen.runtime.legacy_optimization import active_optimizers, optimizer_frequencies
from tests.core.models import TRAINER_QUIET


class Gan(pl.LightningModule):
    """Two parts, one optimizer each; the 1.x training_step signature."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = nn.Linear(4, 4)
        self.disc = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        self.losses: list[tuple[int, float]] = []

    def training_step(self, batch, batch_idx, optimizer_idx):
        (x,) = batch
        fake = self.gen(x)
        if optimizer_idx == 0:
            loss = (self.disc(fake) - 1).pow(2).mean()
        else:
            loss = self.disc(x).pow(2).mean() + (self.disc(fake.detach()) + 1).pow(2).mean()
        self.losses.append((optimizer_idx, loss.item()))
        return loss

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.gen.parameters(), lr=0.01)
        opt_d = torch.optim.SGD(self.disc.parameters(), lr=0.05, momentum=0.9)
        return [opt_g, opt_d], [torch.optim.lr_scheduler.StepLR(opt_d, 2, gamma=0.5)]


def _loader() -> DataLoader:
    data = torch.randn(24, 4, generator=torch.Generator().manual_seed(7))  # the same in every "process"
    return DataLoader(TensorDataset(data), batch_size=4, shuffle=True)  # 6 batches, global-RNG shuffle


def test_active_optimizers_follow_the_frequencies_cycle() -> None:
    assert active_optimizers(2, [], 7) == [0, 1]
    assert [active_optimizers(2, [1, 2], i) for i in range(6)] == [[0], [1], [1], [0], [1], [1]]
    assert [active_optimizers(3, [2, 1, 1], i) for i in range(5)] == [[0], [0], [1], [2], [0]]


def test_frequencies_must_be_given_for_every_optimizer() -> None:
    a, b = (torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1) for _ in range(2))
    assert optimizer_frequencies([{"optimizer": a}, {"optimizer": b}], 2) == []
    assert optimizer_frequencies([{"optimizer": a, "frequency": 3}, {"optimizer": b, "frequency": 1}], 2) == [3, 1]
    with pytest.raises(MisconfigurationException, match=r"(?s)frequencies \[3\] for 2 optimizers.*HINT"):
        optimizer_frequencies([{"optimizer": a, "frequency": 3}, {"optimizer": b}], 2)


def test_two_optimizers_without_optimizer_idx_are_still_refused() -> None:
    class TwoArgs(Gan):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx, 0)

    trainer = pl.Trainer(max_epochs=1, **TRAINER_QUIET)
    with pytest.raises(MisconfigurationException, match="(?s)2 optimizers.*automatic_optimization = False"):
        trainer.fit(TwoArgs(), _loader())


def test_lightning_2_warning_is_given_once_per_class(monkeypatch) -> None:
    monkeypatch.setattr(legacy_optimization, "WARNED_CLASSES", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            pl.Trainer(max_epochs=1, **TRAINER_QUIET).fit(Gan(), _loader())
    messages = [str(w.message) for w in caught if "optimizer_idx" in str(w.message)]
    assert len(messages) == 1, messages
    assert "Lightning 2 needs manual optimization" in messages[0]
    assert "self.automatic_optimization = False" in messages[0]


def test_each_optimizer_changes_only_its_own_parameters() -> None:
    torch.manual_seed(0)
    model = Gan()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[tuple[int, bool, bool]] = []

    class Spy(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer, optimizer_idx):  # 1.x signature
            seen.append((optimizer_idx, pl_module.gen.weight.requires_grad, pl_module.disc[0].weight.requires_grad))

    trainer = pl.Trainer(max_steps=2, callbacks=[Spy()], **TRAINER_QUIET)
    trainer.fit(model, DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4))
    # one batch, two optimizer steps; each optimizer's step sees only its own parameters trainable
    assert trainer.global_step == 2 and trainer.fit_loop.optimizer_steps == [1, 1]
    assert seen == [(0, True, False), (1, False, True)]
    assert [idx for idx, _ in model.losses] == [0, 1]
    assert model.gen.weight.requires_grad and model.disc[0].weight.requires_grad  # untoggled afterwards
    assert not torch.equal(before["gen.weight"], model.gen.weight)
    assert not torch.equal(before["disc.0.weight"], model.disc[0].weight)


def test_lightning_2_hook_signatures_still_work_with_several_optimizers() -> None:
    calls: list[str] = []

    class Modern(Gan):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            calls.append(f"step {type(optimizer).__name__}")
            optimizer.step(closure=optimizer_closure)

        def on_before_optimizer_step(self, optimizer):
            calls.append(f"before {type(optimizer).__name__}")

    pl.Trainer(max_steps=2, **TRAINER_QUIET).fit(Modern(), _loader())
    assert calls == ["step LightningAdam", "before Adam", "step LightningSGD", "before SGD"]


def _fit(model: Gan, ckpt_path=None, callbacks=()) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=3, callbacks=list(callbacks), **TRAINER_QUIET)
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return trainer


class SaveAndStop(pl.Callback):
    def __init__(self, path, at_step: int) -> None:
        self.path, self.at_step = path, at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            trainer.save_checkpoint(self.path)
            raise KeyboardInterrupt  # as abrupt as a kill


def test_resume_with_two_optimizers_matches_an_uninterrupted_run(tmp_path) -> None:
    torch.manual_seed(0)
    full = Gan()
    assert _fit(full).global_step == 36  # 3 epochs x 6 batches x 2 optimizers

    torch.manual_seed(0)
    first = Gan()
    path = tmp_path / "mid.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit(first, callbacks=[SaveAndStop(path, at_step=16)])  # epoch 1, after its 2nd batch
    torch.manual_seed(1234)  # a new process: different RNG, different init
    resumed = Gan()
    trainer = _fit(resumed, ckpt_path=path)

    assert trainer.global_step == 36 and trainer.fit_loop.optimizer_steps == [18, 18]
    assert first.losses + resumed.losses == full.losses
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 3


class Rnn(pl.LightningModule):
    """Lightning 1.x truncated BPTT: ``truncated_bptt_steps`` and ``training_step(..., hiddens)``."""

    def __init__(self, steps: int = 2) -> None:
        super().__init__()
        self.truncated_bptt_steps = steps
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 1)
        self.seen: list[tuple[int, int, object]] = []

    def training_step(self, batch, batch_idx, hiddens):
        x, y = batch
        self.seen.append((batch_idx, x.shape[1], None if hiddens is None else hiddens.requires_grad))
        out, hiddens = self.rnn(x, hiddens)
        loss = (self.head(out) - y).pow(2).mean()
        self.log("train_loss", loss)
        return {"loss": loss, "hiddens": hiddens}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _sequences(n: int = 4, length: int = 5) -> DataLoader:
    g = torch.Generator().manual_seed(3)
    return DataLoader(TensorDataset(torch.randn(n, length, 3, generator=g), torch.randn(n, length, 1, generator=g)),
                      batch_size=2)  # fmt: skip


def test_tbptt_runs_one_step_per_split_with_detached_hiddens_reset_per_batch() -> None:
    model = Rnn()
    trainer = pl.Trainer(max_epochs=1, **TRAINER_QUIET)
    trainer.fit(model, _sequences())
    # 2 batches x splits of 2, 2, 1 steps; each split continues from the previous one's state, detached
    assert model.seen == [(0, 2, None), (0, 2, False), (0, 1, False), (1, 2, None), (1, 2, False), (1, 1, False)]
    assert trainer.global_step == 6


def test_tbptt_custom_split_and_batch_end_outputs() -> None:
    outputs_seen: list[object] = []

    class Halves(Rnn):
        def tbptt_split_batch(self, batch, split_size):
            x, y = batch
            return [[x[:, :3], y[:, :3]], [x[:, 3:], y[:, 3:]]]

        def on_train_batch_end(self, outputs, batch, batch_idx):
            outputs_seen.append([sorted(o) for o in outputs])

    model = Halves(steps=3)
    pl.Trainer(max_steps=2, **TRAINER_QUIET).fit(model, _sequences())
    assert [length for _, length, _ in model.seen] == [3, 2]
    assert outputs_seen == [[["loss"], ["loss"]]]  # one dict per split; "hiddens" is not passed on


def test_tbptt_without_hiddens_in_the_output_is_a_clear_error() -> None:
    class NoHiddens(Rnn):
        def training_step(self, batch, batch_idx, hiddens):
            return super().training_step(batch, batch_idx, hiddens)["loss"]

    with pytest.raises(MisconfigurationException, match="(?s)without 'hiddens'.*HINT: return"):
        pl.Trainer(max_epochs=1, **TRAINER_QUIET).fit(NoHiddens(), _sequences())


def test_the_legacy_trainer_flag_turns_tbptt_on_for_a_module_that_leaves_it_at_0() -> None:
    model = Rnn(steps=0)
    with pytest.warns(DeprecationWarning, match=r"Trainer\(truncated_bptt_steps=...\) is a legacy flag.*self\.trunc"):
        trainer = pl.Trainer(max_steps=3, truncated_bptt_steps=2, **TRAINER_QUIET)
    trainer.fit(model, _sequences())
    assert [length for _, length, _ in model.seen] == [2, 2, 1]
    assert trainer.global_step == 3


def test_tbptt_warns_once_that_lightning_2_needs_manual_optimization(monkeypatch) -> None:
    monkeypatch.setattr(legacy_optimization, "WARNED_CLASSES", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            pl.Trainer(max_steps=1, **TRAINER_QUIET).fit(Rnn(), _sequences())
    ours = [w for w in caught if "truncated_bptt_steps" in str(w.message)]
    assert len(ours) == 1 and "Lightning 2 needs manual optimization" in str(ours[0].message), ours
    assert ours[0].filename == __file__  # pointed at the user's fit() line, so Python shows it
