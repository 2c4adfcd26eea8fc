"""HookCaller: callbacks before the module, the running hook recorded for self.log, the Trainer passed on."""

from __future__ import annotations

from typing import Any

import pytest

import fulmen as pl
from fulmen.runtime.hook_caller import HookCaller
from tests.core.models import BoringModel


class Recording(pl.Callback):
    def __init__(self, calls: list[Any], caller: HookCaller) -> None:
        self.calls, self.caller = calls, caller

    def on_train_start(self, trainer, pl_module) -> None:
        self.calls.append(("callback", trainer, self.caller.current_fx))


class Module(BoringModel):
    def __init__(self, calls: list[Any], caller: HookCaller) -> None:
        super().__init__()
        self.calls, self.caller = calls, caller

    def on_train_start(self) -> None:
        self.calls.append(("module", None, self.caller.current_fx))

    def on_train_end(self) -> None:
        raise RuntimeError("boom")


def _caller() -> tuple[HookCaller, list[Any], object]:
    owner = object()  # what callbacks receive (the Trainer in a run)
    caller = HookCaller(owner)  # type: ignore[arg-type]
    calls: list[Any] = []
    module = Module(calls, caller)
    caller.attach(module, [Recording(calls, caller)])
    return caller, calls, owner


def test_call_runs_callbacks_then_module_and_marks_the_running_hook() -> None:
    caller, calls, owner = _caller()
    caller.call("on_train_start")
    assert calls == [("callback", owner, "on_train_start"), ("module", None, "on_train_start")]
    assert caller.current_fx is None  # restored afterwards


def test_the_running_hook_is_restored_when_a_hook_raises_and_when_nested() -> None:
    caller, _, _ = _caller()
    with caller.running("on_train_epoch_end"):
        with pytest.raises(RuntimeError, match="boom"):
            caller.call("on_train_end")
        assert caller.current_fx == "on_train_epoch_end"
    assert caller.current_fx is None


def test_hooks_nobody_overrides_are_not_listed() -> None:
    caller, _, _ = _caller()
    assert caller.callbacks("on_train_batch_end") == [] and caller.module("on_train_batch_end") is None
    assert caller.any("on_train_start") and not caller.any("on_validation_batch_start")


class BatchEnds(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None: ...


def test_step_hooks_follow_changes_to_the_list_and_are_replaced_when_it_is_assigned() -> None:
    caller, _, _ = _caller()
    step = caller.step_hooks
    assert step.train_batch_end == [] and step.module_train_batch_start is None
    added = BatchEnds()
    caller.callback_list.append(added)  # a change: the same StepHooks, its view refreshed in place
    assert caller.step_hooks is step and step.train_batch_end == [None, added.on_train_batch_end]
    other = BatchEnds()
    caller.use_callbacks([other])  # trainer.callbacks = [...]: a new list, new step hooks
    assert caller.step_hooks is not step and caller.step_hooks.train_batch_end == [other.on_train_batch_end]
    assert step.train_batch_end == [None, added.on_train_batch_end]  # the old list's view is left as it was
