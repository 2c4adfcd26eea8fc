"""CallbackList: per-hook views of the overriding callbacks that every change to the list refreshes."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

import fulmen as pl
from fulmen.core.callback_list import CallbackList


class Ends(pl.Callback):
    """Overrides on_train_batch_end only; records its calls in a shared list."""

    def __init__(self, name: str, calls: list[str] | None = None) -> None:
        self.name, self.calls = name, calls if calls is not None else []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self.calls.append(self.name)


class Quiet(pl.Callback):
    """Overrides nothing."""


def _called(view: list[Any]) -> list[str]:
    return [fn.__self__.name for fn in view if fn is not None]


def test_a_view_lists_the_overriding_methods_index_for_index_and_is_empty_when_nobody_overrides() -> None:
    a, q = Ends("a"), Quiet()
    callbacks = CallbackList([a, q])
    assert callbacks.hooks("on_train_batch_end") == [a.on_train_batch_end, None]
    assert callbacks.hooks("on_train_start") == []
    assert callbacks.hooks("on_train_start") is callbacks.hooks("on_train_start")  # looked up once


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda cbs, new: cbs.append(new), ["a", "b", "new"]),
        (lambda cbs, new: cbs.extend([new]), ["a", "b", "new"]),
        (lambda cbs, new: cbs.__iadd__([new]), ["a", "b", "new"]),
        (lambda cbs, new: cbs.insert(0, new), ["new", "a", "b"]),
        (lambda cbs, new: cbs.__setitem__(1, new), ["a", "new"]),
        (lambda cbs, new: cbs.__setitem__(slice(0, 2), [new]), ["new"]),
        (lambda cbs, new: cbs.remove(cbs[0]), ["b"]),
        (lambda cbs, new: cbs.pop(), ["a"]),
        (lambda cbs, new: cbs.__delitem__(0), ["b"]),
        (lambda cbs, new: cbs.clear(), []),
        (lambda cbs, new: cbs.reverse(), ["b", "a"]),
        (lambda cbs, new: cbs.sort(key=lambda cb: cb.name, reverse=True), ["b", "a"]),
        (lambda cbs, new: cbs.__imul__(2), ["a", "b", "a", "b"]),
    ],
    ids=["append", "extend", "iadd", "insert", "setitem", "slice", "remove", "pop", "delitem", "clear",
         "reverse", "sort", "imul"],  # fmt: skip
)
def test_every_change_refreshes_the_view_already_handed_out(change: Any, expected: list[str]) -> None:
    callbacks = CallbackList([Ends("a"), Ends("b")])
    view = callbacks.hooks("on_train_batch_end")
    change(callbacks, Ends("new"))
    assert callbacks.hooks("on_train_batch_end") is view  # the same object, refreshed in place
    assert _called(view) == expected
    assert len(view) in (0, len(callbacks))  # index for index with the list (or empty)


def test_an_empty_view_fills_in_place_when_an_overriding_callback_arrives() -> None:
    callbacks = CallbackList([Quiet()])
    view = callbacks.hooks("on_train_batch_end")
    assert view == []
    callbacks.append(Ends("late"))
    assert _called(view) == ["late"] and view[0] is None


def test_a_walk_in_progress_sees_an_append_and_a_removal_as_a_walk_over_the_list_would() -> None:
    calls: list[str] = []
    late = Ends("late", calls)
    doomed = Ends("doomed", calls)

    class Changer(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            calls.append("changer")
            callbacks.remove(doomed)
            callbacks.append(late)

    callbacks = CallbackList([Changer(), Quiet(), doomed])
    for fn in callbacks.hooks("on_train_batch_end"):
        if fn is not None:
            fn(None, None)
    # what ``for cb in list: cb.on_train_batch_end(...)`` does over the live list: doomed is gone
    # before its turn, late is reached in the same walk
    assert calls == ["changer", "late"]


def test_after_the_last_overriding_callback_leaves_the_view_holds_nones_only() -> None:
    a = Ends("a")
    callbacks = CallbackList([a, Quiet()])
    view = callbacks.hooks("on_train_batch_end")
    callbacks.remove(a)
    assert view == [None]  # a walk running over it keeps its position; nothing left to call


def test_copies_and_pickles_are_callback_lists_of_their_own() -> None:
    callbacks = CallbackList([Ends("a")])
    view = callbacks.hooks("on_train_batch_end")
    for other in (copy.copy(callbacks), copy.deepcopy(callbacks), pickle.loads(pickle.dumps(callbacks))):
        assert type(other) is CallbackList and [cb.name for cb in other] == ["a"]
        other.append(Ends("b"))
        assert _called(other.hooks("on_train_batch_end")) == ["a", "b"]
    assert _called(view) == ["a"]  # the original's view is untouched by the copies' changes


def test_trainer_callbacks_is_the_list_the_hooks_follow() -> None:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    assert isinstance(trainer.callbacks, CallbackList) and list(trainer.callbacks) == []
    a = Ends("a")
    trainer.callbacks.append(a)
    assert trainer.hook_caller.callbacks("on_train_batch_end") == [a.on_train_batch_end]
    b = Ends("b")
    trainer.callbacks = [b]  # a new list: the hooks called from now on are b's
    assert _called(trainer.hook_caller.callbacks("on_train_batch_end")) == ["b"]
    assert isinstance(trainer.callbacks, CallbackList) and list(trainer.callbacks) == [b]
