"""The hook sequence of fit + test, written out in full (Lightning 2.x order).

Like Lightning's own ``test_trainer_model_hook_system_fit``, a hook is recorded when it
*returns*, so a hook that calls another appears after it (``configure_gradient_clipping``
after ``clip_gradients``, ``optimizer_step`` after the whole closure).
"""

from __future__ import annotations

from functools import partial, update_wrapper
from inspect import getmembers, isfunction

import pytest
import torch

import fulmen as pl
from tests.core.models import BoringModel

_NOT_HOOKS = {
    "log", "log_dict", "optimizers", "lr_schedulers", "print", "all_gather", "freeze", "unfreeze",
    "to_torchscript", "to_onnx", "load_from_checkpoint", "save_hyperparameters", "toggle_optimizer",
    "untoggle_optimizer", "loss",
}  # fmt: skip


def _members(cls: type) -> set[str]:
    return {name for name, _ in getmembers(cls, predicate=isfunction) if not name.startswith("_")}


def _record(called: list[str], prefix: str, name: str, fn, *args, **kwargs):
    out = fn(*args, **kwargs)
    called.append(prefix + name)
    return out


class HookedCallback(pl.Callback):
    def __init__(self, called: list[str]) -> None:
        for name in _members(pl.Callback) - {"state_dict", "load_state_dict"}:
            attr = getattr(self, name)
            wrapped = partial(_record, called, "Callback.", name, attr)
            update_wrapper(wrapped, attr)
            setattr(self, name, wrapped)


class HookedModel(BoringModel):
    def __init__(self, called: list[str]) -> None:
        super().__init__()
        hooks = _members(pl.LightningModule) | _members(BoringModel)
        hooks -= _members(torch.nn.Module) - {"forward", "zero_grad", "train"}
        hooks -= _NOT_HOOKS
        for name in hooks:
            attr = getattr(self, name)
            wrapped = partial(_record, called, "", name, attr)
            update_wrapper(wrapped, attr)
            setattr(self, name, wrapped)


def _transfer() -> list[str]:
    return ["on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"]


def _train_batch(last: bool) -> list[str]:
    return [
        *_transfer(),
        "Callback.on_train_batch_start", "on_train_batch_start",
        "forward", "training_step",
        "Callback.on_before_zero_grad", "on_before_zero_grad", "optimizer_zero_grad",
        "Callback.on_before_backward", "on_before_backward", "backward",
        "Callback.on_after_backward", "on_after_backward",
        "Callback.on_before_optimizer_step", "on_before_optimizer_step",
        "clip_gradients", "configure_gradient_clipping",
        "optimizer_step",
        *(["lr_scheduler_step"] if last else []),
        "Callback.on_train_batch_end", "on_train_batch_end",
    ]  # fmt: skip


def _eval_run(fn: str, batches: int) -> list[str]:
    steps = []
    for _ in range(batches):
        steps += [*_transfer(), f"Callback.on_{fn}_batch_start", f"on_{fn}_batch_start", "forward", f"{fn}_step",
                  f"Callback.on_{fn}_batch_end", f"on_{fn}_batch_end"]  # fmt: skip
    model_eval = "on_validation_model_eval" if fn == "validation" else "on_test_model_eval"
    return [
        "train", model_eval,  # eval() calls train(False), recorded when it returns
        f"Callback.on_{fn}_start", f"on_{fn}_start",
        f"Callback.on_{fn}_epoch_start", f"on_{fn}_epoch_start",
        *steps,
        f"Callback.on_{fn}_epoch_end", f"on_{fn}_epoch_end",
        f"Callback.on_{fn}_end", f"on_{fn}_end",
        "train", "on_validation_model_train" if fn == "validation" else "on_test_model_train",
    ]  # fmt: skip


def _train_epoch() -> list[str]:
    return [
        "Callback.on_train_epoch_start", "on_train_epoch_start",
        *_train_batch(last=False),
        *_train_batch(last=True),
        "zero_grad", "on_validation_model_zero_grad",
        *_eval_run("validation", 2),
        "Callback.on_train_epoch_end", "on_train_epoch_end",
    ]  # fmt: skip


EXPECTED_FIT = [
    "configure_callbacks",
    "prepare_data",
    "Callback.setup", "setup",
    "configure_model",
    "configure_optimizers",
    "Callback.on_fit_start", "on_fit_start",
    "zero_grad",
    "Callback.on_sanity_check_start",
    "val_dataloader",
    *_eval_run("validation", 2),
    "Callback.on_sanity_check_end",
    "train_dataloader",
    "Callback.on_train_start", "on_train_start",
    *_train_epoch(),
    *_train_epoch(),
    "Callback.on_train_end", "on_train_end",
    "Callback.on_fit_end", "on_fit_end",
    "Callback.teardown", "teardown",
]  # fmt: skip

EXPECTED_TEST = [
    "configure_callbacks",
    "prepare_data",
    "Callback.setup", "setup",
    "configure_model",
    "zero_grad",
    "test_dataloader",
    *_eval_run("test", 2),
    "Callback.teardown", "teardown",
]  # fmt: skip


def test_fit_then_test_calls_every_hook_in_lightning_order(tmp_path) -> None:
    called: list[str] = []
    model = HookedModel(called)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=2,
        callbacks=[HookedCallback(called)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model)
    assert called == EXPECTED_FIT
    called.clear()
    trainer.test(model, verbose=False)
    assert called == EXPECTED_TEST


def test_on_train_batch_start_returning_minus_one_ends_the_epoch(tmp_path) -> None:
    seen: list[tuple[int, int]] = []

    class Model(BoringModel):
        def on_train_batch_start(self, batch, batch_idx):
            seen.append((self.current_epoch, batch_idx))
            return -1 if batch_idx == 1 else None

    trainer = pl.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.fit(Model())
    assert seen == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert trainer.global_step == 2  # only batch 0 of each epoch stepped
    assert trainer.current_epoch == 2


@pytest.mark.parametrize("returned", ["tensor", "dict", "none"])
def test_training_step_return_forms_reach_on_train_batch_end(returned: str) -> None:
    outputs = []

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            loss = self.loss(self(batch))
            if returned == "tensor":
                return loss
            if returned == "dict":
                return {"loss": loss, "extra": 7}
            return None

        def on_train_batch_end(self, out, batch, batch_idx):
            outputs.append(out)

    model = Model()
    before = model.layer.weight.detach().clone()
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    with pytest.warns(UserWarning, match="returned None") if returned == "none" else _nothing():
        trainer.fit(model)
    assert len(outputs) == 2
    if returned == "none":
        assert outputs == [{}, {}]
        assert torch.equal(model.layer.weight, before)  # no gradient, no update
    else:
        assert set(outputs[0]) == ({"loss", "extra"} if returned == "dict" else {"loss"})
        assert not outputs[0]["loss"].requires_grad
        assert not torch.equal(model.layer.weight, before)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_hooks_nobody_overrides_are_never_called(monkeypatch) -> None:
    calls = []

    def counting(self, *args, **kwargs):
        calls.append(1)

    # the base no-ops replaced by a counter: a callback that overrides nothing must not reach them
    for name in ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                 "on_before_optimizer_step", "on_before_zero_grad"):  # fmt: skip
        monkeypatch.setattr(pl.Callback, name, counting)

    class Quiet(pl.Callback):
        pass

    trainer = pl.Trainer(max_steps=3, limit_val_batches=0, callbacks=[Quiet()], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.fit(BoringModel())
    assert trainer.global_step == 3
    assert calls == []
