"""The hang rescue's decisions (issue 16.6): it saves only a step boundary's state, one rank
saves, the others follow its done-file, and a stop signal reaches its thread.

The whole flow with real processes (a rank hung in training_step, SIGTERM to the launcher) is
``tests/integration/local/test_hang_rescue.py``.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.runtime import hang_rescue
from fulmen.runtime.hang_rescue import HangRescue, remove_rescue_marks
from fulmen.runtime.preemption import PreemptionHandler
from fulmen.runtime.resume_checkpoint import resume_checkpoint_dir


class Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.fixture(autouse=True)
def no_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(hang_rescue, "_exit", fake_exit)


class Setup:
    """A model with a BatchNorm, its loop state, and a rescue that records what it saves."""

    def __init__(self, run_dir: Path, rank: int = 0) -> None:
        self.model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.step = 2
        self.saved: list[dict[str, Any]] = []
        self.rescued: list[tuple[Path, int]] = []
        self.rescue = HangRescue(
            rank=rank,
            run_dir=run_dir,
            tensors=[*self.model.parameters(), *self.model.buffers()],
            loop_state=lambda: {"global_step": self.step, "epoch": 0},
            save=self.save,
            signals=[signal.SIGTERM],
            on_rescued=lambda path, step: self.rescued.append((path, step)),
            where=lambda: "is stuck in training_step at train.py:9",
        )
        self.folder = resume_checkpoint_dir(run_dir)

    def save(self, loop_state: dict[str, Any]) -> Path:
        self.saved.append(loop_state)
        path = self.folder / f"resume-step={loop_state['global_step']:012d}.ckpt"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"ckpt")
        return path

    def training_step(self) -> torch.Tensor:
        """What a step does before its backward: a forward (BatchNorm in eval mode: no buffer changes)."""
        return self.model(torch.randn(4, 3)).pow(2).mean()


def test_a_rank_waiting_in_backward_saves_the_boundary_state_and_exits_75(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Setup(tmp_path)
    s.model.eval()  # no running statistics change in the forward
    s.rescue.at_boundary()
    s.rescue.past_boundary(stopping=False)
    loss = s.training_step()
    s.step = 3  # the live loop state moved on (a batch fetched): the boundary's is saved
    with s.rescue.in_backward(), pytest.raises(Exited) as exited:
        loss.backward()  # a real rank would be blocked here, in the gradient all-reduce
        s.rescue.try_rescue(signal.SIGTERM, 2.0)
    assert exited.value.code == 75
    assert s.saved == [{"global_step": 2, "epoch": 0}]
    path = s.folder / "resume-step=000000000002.ckpt"
    assert s.rescued == [(path, 2)]
    assert (s.folder / hang_rescue.DONE_NAME).read_text() == f"0 2 {path}\n"
    err = capsys.readouterr().err
    assert "rank 0: step 3 did not end within 2 s of SIGTERM (this rank waits in backward" in err
    assert f"saved the resume checkpoint of step 2 (the last completed step) to {path} without collectives" in err


def test_a_rank_at_the_stop_collective_saves_the_step_it_completed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Setup(tmp_path)
    s.rescue.at_boundary()  # and then waits in the stop collective for a stuck peer
    with pytest.raises(Exited):
        s.rescue.try_rescue(signal.SIGTERM, 3.0)
    assert s.saved == [{"global_step": 2, "epoch": 0}]
    assert "the ranks did not agree to stop within 3 s of SIGTERM (this rank waits at the boundary after step 2" in (
        capsys.readouterr().err
    )


def test_a_buffer_changed_by_the_unfinished_forward_means_no_save(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.rescue.at_boundary()
    s.rescue.past_boundary(stopping=False)
    loss = s.training_step()  # train mode: BatchNorm's running statistics move
    with s.rescue.in_backward():
        loss.backward()
        reason = s.rescue.try_rescue(signal.SIGTERM, 2.0)
    assert reason is not None and "a parameter or buffer changed since step 2" in reason
    assert s.saved == [] and not (s.folder / hang_rescue.CLAIM_NAME).exists()


def test_a_rank_busy_in_its_own_code_or_after_an_epoch_end_does_not_save(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.rescue.at_boundary()
    s.rescue.past_boundary(stopping=False)
    reason = s.rescue.try_rescue(signal.SIGTERM, 2.0)  # running: the hung rank, inside training_step
    assert reason is not None and "this rank is stuck in training_step at train.py:9" in reason
    s.rescue.invalidate()  # the epoch ended: schedulers and callbacks moved
    with s.rescue.in_backward():
        reason = s.rescue.try_rescue(signal.SIGTERM, 2.0)
    assert reason is not None and "an epoch's first step" in reason
    assert s.saved == []


def test_one_rank_saves_and_the_others_follow_its_done_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = Setup(tmp_path, rank=0), Setup(tmp_path, rank=1)
    first.model.eval()
    second.model.eval()
    for s in (first, second):
        s.rescue.at_boundary()
    with pytest.raises(Exited):
        second.rescue.try_rescue(signal.SIGTERM, 2.0)
    assert first.rescue.try_rescue(signal.SIGTERM, 2.0) is None  # claimed by rank 1: rank 0 does not save
    assert first.saved == [] and len(second.saved) == 1
    done = first.rescue._peer_rescue()
    assert done is not None
    with pytest.raises(Exited) as exited:
        first.rescue._exit_after_peer(*done)
    assert exited.value.code == 75
    assert "rank 0: rank 1 saved the resume checkpoint of step 2" in capsys.readouterr().err
    remove_rescue_marks(tmp_path)  # the next attempt starts without them
    assert not (first.folder / hang_rescue.CLAIM_NAME).exists() and first.rescue._peer_rescue() is None


def test_a_previous_attempts_done_file_counts_only_after_this_fits_first_boundary(tmp_path: Path) -> None:
    """Rank 0 removes the marks at fit start; until this rank's first step boundary (after a
    collective with rank 0) a done-file may still be the previous attempt's."""
    old = Setup(tmp_path, rank=1)
    old.rescue.at_boundary()
    with pytest.raises(Exited):
        old.rescue.try_rescue(signal.SIGTERM, 2.0)
    fresh = Setup(tmp_path, rank=0)
    assert fresh.rescue._peer_rescue() is None
    fresh.rescue.at_boundary()
    assert fresh.rescue._peer_rescue() == (1, 2, str(fresh.folder / "resume-step=000000000002.ckpt"))


def test_the_grace_follows_the_longest_step_within_bounds(tmp_path: Path) -> None:
    rescue = Setup(tmp_path).rescue
    assert rescue.grace_s() == hang_rescue.MIN_GRACE_S
    rescue.longest_step_s = 4.0
    assert rescue.grace_s() == 12.0
    rescue.longest_step_s = 60.0
    assert rescue.grace_s() == hang_rescue.MAX_GRACE_S


def test_a_stop_signal_reaches_the_rescue_thread_through_the_wakeup_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread must learn of a signal without the main thread running Python (it may be
    blocked in a collective): the C-level handler writes the number to the wakeup fd."""
    s = Setup(tmp_path)
    woken = threading.Event()
    monkeypatch.setattr(HangRescue, "grace_s", lambda self: 0.0)

    def try_rescue(sig: signal.Signals, waited_s: float) -> str | None:
        woken.set()
        return None

    monkeypatch.setattr(s.rescue, "try_rescue", try_rescue)
    previous = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous)
    with PreemptionHandler([signal.SIGUSR1]) as handler:
        s.rescue._signals = {int(signal.SIGUSR1)}
        s.rescue.start()
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert woken.wait(30), "the rescue thread never saw the signal"
        finally:
            s.rescue.stop()
        assert handler.received_signal is signal.SIGUSR1  # the flag is set as before
    assert signal.set_wakeup_fd(previous) == previous  # put back


def test_a_single_rank_fit_arms_no_rescue(tmp_path: Path) -> None:
    """One rank has no peer to wait for: no thread, no wakeup fd, nothing per step."""
    seen: list[Any] = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            seen.append((trainer.checkpoint_flow.rescue, trainer.optimization.rescue, signal.set_wakeup_fd(-1)))
            signal.set_wakeup_fd(seen[-1][2])

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[Probe()])  # fmt: skip
    trainer.fit(Net(), DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))
    assert seen == [(None, None, -1)]
