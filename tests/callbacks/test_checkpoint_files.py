"""File operations of ModelCheckpoint queue behind background saves, on rank 0 only."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fulmen.callbacks import checkpoint_files as files
from fulmen.loggers.logger import Logger
from fulmen.runtime import checkpoint_saver as saver
from fulmen.runtime.checkpoint import save_atomic


@pytest.fixture
def held_save(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Hold every background fsync+rename until the returned event is set."""
    release = threading.Event()
    real = saver.move_into_place

    def held(*args: Any, **kwargs: Any) -> None:
        assert release.wait(30), "test never released the held save"
        real(*args, **kwargs)

    monkeypatch.setattr(saver, "move_into_place", held)
    yield release
    release.set()
    saver.wait_for_pending_saves(raise_errors=False)


class Barrier:
    def __init__(self) -> None:
        self.calls = 0

    def barrier(self) -> None:
        self.calls += 1

    def broadcast(self, obj: Any) -> Any:
        return obj


def _trainer(rank_zero: bool = True) -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=rank_zero, strategy=Barrier(), loggers=[])


def test_removable_only_inside_dirpath_and_never_the_new_or_resumed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt")
    assert files.is_removable(old, new, str(tmp_path), resumed=None)
    assert files.is_removable(str(tmp_path / "sub" / "a.ckpt"), new, str(tmp_path), resumed=None)
    assert not files.is_removable(new, new, str(tmp_path), resumed=None)  # name reused by the new file
    assert not files.is_removable(old, new, str(tmp_path / "other"), resumed=None)
    monkeypatch.chdir(tmp_path)  # the resumed path may be relative
    assert not files.is_removable(old, new, str(tmp_path), resumed="a.ckpt")


def test_deletion_waits_for_the_replacing_save(tmp_path: Path, held_save: threading.Event) -> None:
    old, new = tmp_path / "old.ckpt", tmp_path / "new.ckpt"
    save_atomic({"v": 1}, old)
    saver.save_in_background({"v": 2}, new)
    trainer = _trainer()
    files.remove_checkpoint(trainer, str(old))
    assert old.exists()  # still there while its replacement is not in place
    # the bookkeeping already counts the queued operations as done
    assert not files.exists_on_rank_zero(trainer, old) and files.exists_on_rank_zero(trainer, new)
    held_save.set()
    saver.wait_for_pending_saves()
    assert new.exists() and not old.exists()


def test_only_rank_zero_deletes(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    save_atomic({"v": 1}, path)
    files.remove_checkpoint(_trainer(rank_zero=False), str(path))
    assert path.exists()
    files.remove_checkpoint(_trainer(), str(path))
    assert not path.exists()
    files.remove_checkpoint(_trainer(), str(path))  # already gone: nothing to do


def test_link_is_relative_and_all_ranks_meet(tmp_path: Path) -> None:
    target, link = tmp_path / "epoch=0.ckpt", tmp_path / "last.ckpt"
    save_atomic({"v": 1}, target)
    trainer = _trainer()
    files.link_checkpoint(trainer, str(target), str(link))
    assert os.readlink(link) == "epoch=0.ckpt" and trainer.strategy.calls == 1
    other_rank = _trainer(rank_zero=False)
    files.link_checkpoint(other_rank, str(target), str(tmp_path / "not-made.ckpt"))
    assert not (tmp_path / "not-made.ckpt").exists() and other_rank.strategy.calls == 1
    target.unlink()
    files.remove_checkpoint(trainer, str(link))  # a dangling link is removed too
    assert not os.path.lexists(link)


class _Plain(Logger):
    """A logger that keeps the base class's (no-op) ``after_save_checkpoint``."""

    @property
    def name(self) -> str:
        return "plain"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


class _Uploader(_Plain):
    """Looks at the checkpoint file in its hook, as an uploading logger does."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.seen: list[bool] = []

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.seen.append(self.path.exists())


def test_a_logger_overriding_the_hook_finds_the_file(tmp_path: Path, held_save: threading.Event) -> None:
    path = tmp_path / "a.ckpt"
    saver.save_in_background({"v": 1}, path)
    uploader = _Uploader(path)
    trainer = _trainer()
    trainer.loggers = [_Plain(), uploader]
    threading.Timer(0.2, held_save.set).start()
    files.notify_loggers(trainer, object())
    assert uploader.seen == [True]


def test_the_base_hook_does_not_wait_for_pending_saves(tmp_path: Path, held_save: threading.Event) -> None:
    saver.save_in_background({"v": 1}, tmp_path / "a.ckpt")
    trainer = _trainer()
    trainer.loggers = [_Plain()]
    files.notify_loggers(trainer, object())  # returns while the save is held
    assert saver.has_pending_saves()


def test_held_removals_wait_for_the_end_of_the_block_then_go_in_order() -> None:
    held, removed = files.HeldRemovals(), []
    with held.until_done(True, removed.append):
        assert held.hold("old-top-k.ckpt") and held.hold("old-last.ckpt")
        assert removed == []  # the link has not moved yet
    assert removed == ["old-top-k.ckpt", "old-last.ckpt"]
    assert not held.hold("later.ckpt")  # outside a block: delete at once


def test_held_removals_are_kept_when_the_save_fails() -> None:
    held, removed = files.HeldRemovals(), []
    with pytest.raises(OSError), held.until_done(True, removed.append):
        held.hold("old-top-k.ckpt")
        raise OSError("disk full")
    assert removed == []
    assert not held.hold("next.ckpt")  # the failed block does not leave a hold behind


def test_held_removals_inactive_or_nested_do_not_hold_again() -> None:
    held, removed = files.HeldRemovals(), []
    with held.until_done(False, removed.append):
        assert not held.hold("a.ckpt")
    with held.until_done(True, removed.append):
        with held.until_done(True, removed.append):  # an inner save inside the same hold
            held.hold("b.ckpt")
        assert removed == []  # released only by the outer block
    assert removed == ["b.ckpt"]
