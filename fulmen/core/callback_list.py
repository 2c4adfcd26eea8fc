"""``trainer.callbacks``: a list that knows, per hook name, which callbacks override the hook.

Lightning walks ``trainer.callbacks`` at every hook call and calls each callback's method,
the base no-ops included. fulmen looks the overriding methods up once per hook name, so that a
hook nobody overrides costs one dictionary look-up per call, and a loop does not call every
callback's empty method on every step.

The look-up must follow changes: a callback appended in ``on_fit_start`` gets every later
hook (Lightning: ``tests/compat/scenarios_callback_list.py``). ``hooks(name)`` is therefore a
*view* that every change to the list refreshes in place: when some callback overrides
``name`` it is, index for index, the list's bound ``name`` methods with None for the callbacks
that keep the no-op. A loop walking a view while a hook changes the list (appends, removes
or inserts a callback) thus walks exactly what Lightning's walk over the live list walks: an
appended callback gets the very call that is running, a removed one no longer does.
Assigning a new list to ``trainer.callbacks`` makes a new ``CallbackList``; a walk already
running over the old one finishes on the old one, as in Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, SupportsIndex

from fulmen.core.callback import Callback
from fulmen.core.hooks import is_overridden

HookView = list[Callable[..., Any] | None]


class CallbackList(list):  # type: ignore[type-arg]
    """A list of callbacks whose ``hooks(name)`` views stay true to it (see the module docstring)."""

    def __init__(self, callbacks: Iterable[Any] = ()) -> None:
        super().__init__(callbacks)
        self._views: dict[str, HookView] = {}

    def hooks(self, name: str) -> HookView:
        """Each callback's bound ``name`` method (None where it keeps the base no-op); ``[]`` while
        no callback overrides ``name``. The same list object for the life of this CallbackList,
        refreshed in place, so it may be held across calls; after a removal it may hold only
        Nones (so an empty view means "nobody overrides", a non-empty one "somebody may").
        Walk it with ``if fn is not None``."""
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = self._aligned(name)
        return view

    def _aligned(self, name: str) -> HookView:
        view = [getattr(cb, name) if is_overridden(cb, name, Callback) else None for cb in self]
        return view if any(fn is not None for fn in view) else []

    def _changed(self) -> None:
        """Refresh every view in place (a walk in progress over one sees the change, as Lightning's
        walk over the list itself would)."""
        views = self.__dict__.get("_views")
        if not views:
            return
        for name, view in views.items():
            fresh = self._aligned(name)
            if view or fresh:
                view[:] = fresh or [None] * len(self)  # a running walk keeps its indices

    # every way a list changes, each followed by the refresh
    def append(self, item: Any) -> None:
        super().append(item)
        self._changed()

    def extend(self, items: Iterable[Any]) -> None:
        super().extend(items)
        self._changed()

    def insert(self, index: SupportsIndex, item: Any) -> None:
        super().insert(index, item)
        self._changed()

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._changed()

    def pop(self, index: SupportsIndex = -1) -> Any:
        item = super().pop(index)
        self._changed()
        return item

    def clear(self) -> None:
        super().clear()
        self._changed()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._changed()

    def reverse(self) -> None:
        super().reverse()
        self._changed()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._changed()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._changed()

    def __iadd__(self, items: Iterable[Any]) -> CallbackList:  # type: ignore[override]
        super().__iadd__(items)
        self._changed()
        return self

    def __imul__(self, count: SupportsIndex) -> CallbackList:
        super().__imul__(count)
        self._changed()
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # copies and pickles are built from the callbacks alone (the views hold bound methods)
        return (type(self), (list(self),))
