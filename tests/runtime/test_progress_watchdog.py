"""The rank side of the progress watchdog: a heartbeat off the hot path (fulmen/runtime/progress_watchdog.py).

Acting on a hang (dump, exit 124) ends the process: tests/integration/local/test_hang_watchdog.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import fulmen as pl
from fulmen.jobs import hang
from fulmen.runtime.progress_watchdog import start_progress_watchdog
from tests.core.models import TRAINER_QUIET


def test_heartbeat_follows_the_counter_and_a_launcher_watched_rank_never_acts(tmp_path: Path) -> None:
    counter = [0]
    environ = {hang.HANG_TIMEOUT_VARIABLE: "0.2", hang.HANG_WATCHER_VARIABLE: "launcher"}
    watchdog = start_progress_watchdog(lambda: counter[0], rank=1, run_dir=str(tmp_path), environ=environ)
    assert watchdog is not None and not watchdog.act
    path = hang.heartbeat_path(tmp_path, 1)
    try:
        deadline = time.monotonic() + 5
        while hang.read_heartbeat(path) != 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        counter[0] = 41
        while hang.read_heartbeat(path) != 41 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hang.read_heartbeat(path) == 41
        time.sleep(0.5)  # stalled past the timeout: only the launcher acts
    finally:
        watchdog.stop()


def test_no_watchdog_without_a_hang_timeout(tmp_path: Path) -> None:
    assert start_progress_watchdog(lambda: 0, rank=0, run_dir=str(tmp_path), environ={}) is None


def test_a_fit_reports_its_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.runtime.test_trainer_preemption import Net, _loader

    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    monkeypatch.setenv(hang.HANG_TIMEOUT_VARIABLE, "0.05")
    monkeypatch.setenv(hang.HANG_WATCHER_VARIABLE, "launcher")

    class Slow(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            time.sleep(0.03)

    pl.Trainer(max_epochs=1, callbacks=[Slow()], **TRAINER_QUIET).fit(Net(), _loader())
    assert hang.read_heartbeat(hang.heartbeat_path(tmp_path, 0)) == 6  # 48 samples / 8: the last one too
