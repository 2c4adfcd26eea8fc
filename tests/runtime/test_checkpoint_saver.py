"""Background checkpoint saves: order, visibility, failures and waiting."""

from __future__ import annotations

import errno
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fulmen.errors import CheckpointError
from fulmen.runtime import checkpoint as ck
from fulmen.runtime import checkpoint_saver as saver


@pytest.fixture
def held_finish(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Hold every background fsync+rename until the returned event is set."""
    release = threading.Event()
    real = saver.move_into_place

    def held(temp: Path, final: Path, *, fd: int | None = None) -> None:
        assert release.wait(30), "test never released the held save"
        real(temp, final, fd=fd)

    monkeypatch.setattr(saver, "move_into_place", held)
    yield release
    release.set()
    saver.wait_for_pending_saves(raise_errors=False)


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".fulmen-tmp-" in p.name)


def test_save_is_complete_on_disk_before_its_rename(tmp_path: Path, held_finish: threading.Event) -> None:
    final = tmp_path / "a.ckpt"
    saver.save_in_background({"w": torch.arange(4)}, final)
    # written, not yet renamed: the temp file already holds the whole checkpoint
    assert not final.exists() and saver.has_pending_saves()
    (temp,) = _temps(tmp_path)
    ck.check_checkpoint_file(tmp_path / temp, verify_checksums=True)
    assert saver.exists_after_pending_saves(final)
    held_finish.set()
    saver.wait_for_pending_saves()
    assert torch.equal(ck.load_checkpoint(final)["w"], torch.arange(4))
    assert _temps(tmp_path) == [] and not saver.has_pending_saves()


def test_deletion_queued_behind_a_save_waits_for_it(tmp_path: Path, held_finish: threading.Event) -> None:
    old, new = tmp_path / "old.ckpt", tmp_path / "new.ckpt"
    ck.save_atomic({"v": 1}, old)
    saver.save_in_background({"v": 2}, new)
    saver.after_pending_saves(old.unlink, f"deleting {old}", old, exists_after=False)
    assert old.exists() and not new.exists()  # the superseded file stays until the new one is in place
    assert not saver.exists_after_pending_saves(old) and saver.exists_after_pending_saves(new)
    held_finish.set()
    saver.wait_for_pending_saves()
    assert new.exists() and not old.exists()


def test_action_runs_at_once_when_nothing_is_pending(tmp_path: Path) -> None:
    ran: list[int] = []
    saver.after_pending_saves(lambda: ran.append(1), "noting")
    assert ran == [1]


def test_saves_finish_in_the_order_they_were_made(tmp_path: Path, held_finish: threading.Event) -> None:
    final = tmp_path / "last.ckpt"
    for value in range(3):
        saver.save_in_background({"v": value}, final)
    assert len(_temps(tmp_path)) == 3
    held_finish.set()
    saver.wait_for_pending_saves()
    assert ck.load_checkpoint(final)["v"] == 2 and _temps(tmp_path) == []


def test_failed_save_drops_what_follows_and_is_raised_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def disk_full(temp: Path, final: Path, *, fd: int | None = None) -> None:
        release.wait(30)
        ck.discard_temp(temp, fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saver, "move_into_place", disk_full)
    old = tmp_path / "epoch=0.ckpt"
    ck.save_atomic({"v": 0}, old)
    saver.save_in_background({"v": 1}, tmp_path / "epoch=1.ckpt")
    saver.after_pending_saves(old.unlink, f"deleting {old}", old)
    saver.save_in_background({"v": 2}, tmp_path / "epoch=2.ckpt")
    release.set()
    with pytest.raises(CheckpointError, match=r"(?s)epoch=1\.ckpt.*No space left.*no older checkpoint was deleted"):
        saver.wait_for_pending_saves()
    assert old.exists()  # the deletion queued behind the failed save never ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0.ckpt"]  # later temp files removed
    saver.wait_for_pending_saves()  # raised once, not again


def test_next_save_raises_an_earlier_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(temp: Path, final: Path, *, fd: int | None = None) -> None:
        ck.discard_temp(temp, fd)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(saver, "move_into_place", fails)
    saver.save_in_background({"v": 1}, tmp_path / "a.ckpt")
    saver.wait_for_pending_saves(raise_errors=False)
    with pytest.raises(CheckpointError, match="Permission denied"):
        saver.save_in_background({"v": 2}, tmp_path / "b.ckpt")
    assert not (tmp_path / "b.ckpt").exists() and _temps(tmp_path) == []


def test_load_in_the_same_process_waits_for_the_save(tmp_path: Path, held_finish: threading.Event) -> None:
    final = tmp_path / "a.ckpt"
    saver.save_in_background({"v": 7}, final)
    threading.Timer(0.2, held_finish.set).start()
    assert ck.load_checkpoint(final)["v"] == 7


def test_unpicklable_object_fails_in_the_caller_and_leaves_nothing(tmp_path: Path) -> None:
    class Local:
        pass

    with pytest.raises((AttributeError, TypeError, pickle.PicklingError), match="pickle"):
        saver.save_in_background({"x": Local()}, tmp_path / "a.ckpt")
    saver.wait_for_pending_saves()
    assert list(tmp_path.iterdir()) == []


def test_trainer_saves_in_background_during_a_run_and_waits_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    import fulmen as pl

    real = saver.move_into_place
    finished: list[Path] = []

    def recording(temp: Path, final: Path, *, fd: int | None = None) -> None:
        real(temp, final, fd=fd)
        finished.append(final)

    monkeypatch.setattr(saver, "move_into_place", recording)

    class Saves(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            trainer.save_checkpoint(tmp_path / "in-run.ckpt")

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Saves()])  # fmt: skip
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))
    # saved through the background path, and fit returned only after its rename
    assert finished == [tmp_path / "in-run.ckpt"] and (tmp_path / "in-run.ckpt").exists()
    assert _temps(tmp_path) == [] and not saver.has_pending_saves()
    finished.clear()
    trainer.save_checkpoint(tmp_path / "after.ckpt")  # outside a run: synchronous, no background step
    assert finished == [] and (tmp_path / "after.ckpt").exists()
