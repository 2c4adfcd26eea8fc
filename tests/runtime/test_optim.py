"""configure_optimizers forms, scheduler intervals/frequency, ReduceLROnPlateau, manual optimization."""

from __future__ import annotations

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau, StepLR

import fulmen as pl
from fulmen.errors import MisconfigurationException
from fulmen.runtime.optim import LRSchedulerConfig, parse_optimizers, wrap_optimizer
from tests.core.models import TRAINER_QUIET, BoringModel


def _opt() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)


def test_every_configure_optimizers_form_is_understood() -> None:
    a, b = _opt(), _opt()
    sa = StepLR(a, 1)
    assert parse_optimizers(a) == ([a], [])
    assert parse_optimizers([a, b]) == ([a, b], [])
    opts, scheds = parse_optimizers(([a], [sa]))
    assert opts == [a] and scheds == [LRSchedulerConfig(sa)]
    opts, scheds = parse_optimizers({"optimizer": a, "lr_scheduler": sa})
    assert scheds[0].scheduler is sa and scheds[0].interval == "epoch"
    opts, scheds = parse_optimizers(
        {"optimizer": a, "lr_scheduler": {"scheduler": sa, "interval": "step", "frequency": 3, "name": "s"}}
    )
    assert (scheds[0].interval, scheds[0].frequency, scheds[0].name) == ("step", 3, "s")
    plateau = ReduceLROnPlateau(b)
    opts, scheds = parse_optimizers(
        ({"optimizer": a, "lr_scheduler": sa, "frequency": 1}, {"optimizer": b, "lr_scheduler": plateau, "monitor": "m"})
    )
    assert opts == [a, b]
    assert scheds[1].reduce_on_plateau and scheds[1].monitor == "m"


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ("adam", "not a form"),
        ({"optimiser": None}, "unknown key"),
        ({"optimizer": _opt(), "lr_scheduler": {"scheduler": None, "interval": "steps"}}, "Did you mean 'step'"),
        ({"optimizer": _opt(), "lr_scheduler": {"sheduler": 1}}, "Did you mean 'scheduler'"),
        ([1, 2], "not a form"),
    ],
)
def test_bad_configure_optimizers_returns_are_clear_errors(output, match) -> None:
    with pytest.raises(MisconfigurationException, match=match):
        parse_optimizers(output)


def test_plateau_without_monitor_is_an_error_with_hint() -> None:
    a = _opt()
    with pytest.raises(MisconfigurationException, match="HINT: return .*monitor"):
        parse_optimizers({"optimizer": a, "lr_scheduler": ReduceLROnPlateau(a)})


def test_lightning_optimizer_is_an_instance_of_the_wrapped_class_and_never_stale() -> None:
    raw = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.5)
    steps = []
    wrapped = wrap_optimizer(raw, lambda opt, closure: steps.append(opt))
    assert isinstance(wrapped, torch.optim.Adam)
    wrapped.step()
    assert steps == [raw]
    raw.load_state_dict(raw.state_dict())
    assert wrapped.param_groups is raw.param_groups
    wrapped.param_groups[0]["lr"] = 0.1
    assert raw.param_groups[0]["lr"] == 0.1


def _lrs(model_cls, **trainer_kwargs) -> list[float]:
    lrs = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(callbacks=[Record()], limit_val_batches=0, **TRAINER_QUIET, **trainer_kwargs)
    trainer.fit(model_cls())
    return lrs


def test_step_scheduler_with_frequency_steps_every_n_batches() -> None:
    class Model(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            sched = LambdaLR(opt, lambda n: 0.5**n)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 2}}

    assert _lrs(Model, max_epochs=1, limit_train_batches=6) == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_epoch_scheduler_steps_after_the_last_batch_of_each_epoch() -> None:
    class Model(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return [opt], [StepLR(opt, step_size=1, gamma=0.1)]

    lrs = _lrs(Model, max_epochs=2, limit_train_batches=2)
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_reduce_on_plateau_reads_the_monitored_metric() -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("constant", 1.0)
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            sched = ReduceLROnPlateau(opt, patience=0, factor=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "constant"}}

    lrs = _lrs(Model, max_epochs=3, limit_train_batches=1)
    assert lrs == [1.0, 1.0, 0.5]


def test_reduce_on_plateau_with_a_missing_metric_lists_the_available_keys() -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.log("train_loss", 1.0)
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": ReduceLROnPlateau(opt), "monitor": "val_loss"}}

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, **TRAINER_QUIET)
    with pytest.raises(MisconfigurationException, match=r"'val_loss'.*Available metrics: \['train_loss'\]"):
        trainer.fit(Model())


def test_several_optimizers_with_automatic_optimization_is_an_error_with_a_hint() -> None:
    class Model(BoringModel):
        def configure_optimizers(self):
            return [torch.optim.SGD(self.parameters(), lr=0.1), torch.optim.Adam(self.parameters())]

    trainer = pl.Trainer(max_steps=1, **TRAINER_QUIET)
    with pytest.raises(MisconfigurationException, match="HINT: set `self.automatic_optimization = False`"):
        trainer.fit(Model())


class GANLike(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.other = torch.nn.Linear(32, 2)

    def training_step(self, batch, batch_idx):
        opt_a, opt_b = self.optimizers()
        sched_a, _ = self.lr_schedulers()
        self.toggle_optimizer(opt_a)
        assert not any(p.requires_grad for p in self.other.parameters())
        self.untoggle_optimizer(opt_a)
        assert all(p.requires_grad for p in self.other.parameters())
        for opt, layer in ((opt_a, self.layer), (opt_b, self.other)):
            with self.toggled_optimizer(opt):
                loss = self.loss(layer(batch))
                opt.zero_grad()
                self.manual_backward(loss)
                self.clip_gradients(opt, gradient_clip_val=0.01, gradient_clip_algorithm="value")
                assert all(p.grad is None or p.grad.abs().max() <= 0.01 for p in layer.parameters())
                opt.step()
        sched_a.step()
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        a = torch.optim.SGD(self.layer.parameters(), lr=0.1)
        b = torch.optim.SGD(self.other.parameters(), lr=0.1)
        return [a, b], [StepLR(a, 1, 0.5), StepLR(b, 1, 0.5)]


def test_manual_optimization_with_two_optimizers_counts_every_step() -> None:
    model = GANLike()
    before = model.other.weight.detach().clone()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, **TRAINER_QUIET)
    trainer.fit(model)
    assert trainer.global_step == 6  # Lightning counts each optimizer.step() in manual mode
    assert trainer.fit_loop.optimizer_steps == [3, 3]
    assert not torch.equal(before, model.other.weight)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert trainer.optimizers[1].param_groups[0]["lr"] == 0.1  # manual: the Trainer steps no scheduler


def test_manual_backward_under_automatic_optimization_is_an_error() -> None:
    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            self.manual_backward(self.loss(self(batch)))

    with pytest.raises(MisconfigurationException, match="automatic_optimization"):
        pl.Trainer(max_steps=1, **TRAINER_QUIET).fit(Model())


@pytest.mark.parametrize(("algorithm", "check"), [("norm", "norm"), ("value", "value")])
def test_trainer_gradient_clipping_norm_and_value(algorithm, check) -> None:
    seen = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            return 1000 * super().training_step(batch, batch_idx)["loss"]

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            optimizer_closure_result = optimizer.step(closure=optimizer_closure)
            return optimizer_closure_result

        def on_before_optimizer_step(self, optimizer):
            seen.append("before")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    grads = []

    class Grab(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            params = [p.grad for p in pl_module.parameters()]
            grads.append(params)

    pl.Trainer(max_steps=1, limit_val_batches=0, gradient_clip_val=0.5, gradient_clip_algorithm=algorithm,
               callbacks=[Grab()], **TRAINER_QUIET).fit(Model())  # fmt: skip
    flat = torch.cat([g.flatten() for g in grads[0]])
    if check == "norm":
        assert flat.norm() == pytest.approx(0.5, rel=1e-4)
    else:
        assert flat.abs().max() == pytest.approx(0.5)
    assert seen == ["before"]


def test_configure_gradient_clipping_override_receives_the_trainer_settings() -> None:
    calls = []

    class Model(BoringModel):
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            calls.append((gradient_clip_val, gradient_clip_algorithm))

    pl.Trainer(max_steps=2, limit_val_batches=0, gradient_clip_val=0.3, gradient_clip_algorithm="value",
               **TRAINER_QUIET).fit(Model())  # fmt: skip
    assert calls == [(0.3, "value"), (0.3, "value")]


def test_configure_optimizers_returning_none_trains_without_updates() -> None:
    class Model(BoringModel):
        def configure_optimizers(self):
            return None

    model = Model()
    before = model.layer.weight.detach().clone()
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **TRAINER_QUIET)
    with pytest.warns(UserWarning, match="updates no weights"):
        trainer.fit(model)
    assert trainer.global_step == 2 and trainer.optimizers == []
    assert torch.equal(before, model.layer.weight)


def test_estimated_stepping_batches_is_usable_inside_configure_optimizers() -> None:
    class Model(BoringModel):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            total = self.trainer.estimated_stepping_batches
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=int(total))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    trainer = pl.Trainer(max_epochs=2, limit_train_batches=5, accumulate_grad_batches=2, limit_val_batches=0,
                         **TRAINER_QUIET)  # fmt: skip
    trainer.fit(Model())  # OneCycleLR raises if stepped more than total_steps times
    assert trainer.estimated_stepping_batches == 6 == trainer.global_step
