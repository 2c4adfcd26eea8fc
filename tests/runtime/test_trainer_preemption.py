"""Preemption call sites: a stop request at a step boundary saves the resume checkpoint and
exits with PREEMPTED_EXIT_CODE; the next start in the same run directory resumes from it."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import fulmen as pl
from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE
from fulmen.runtime.resume_checkpoint import find_resume_checkpoint
from tests.core.models import TRAINER_QUIET, regression_data
from tests.runtime.full_disk import small_tmpfs  # noqa: F401 - fixture


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class StopRequest(pl.Callback):
    """Acts like a SIGTERM arriving during the given step."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            trainer.checkpoint_flow.preemption.request_stop(signal.SIGTERM)


def _loader() -> DataLoader:
    return DataLoader(regression_data(48), batch_size=8, shuffle=True)


def test_stop_request_saves_resume_checkpoint_exits_75_and_next_start_resumes(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    reference = Net()
    pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(reference, _loader())

    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    torch.manual_seed(0)
    handlers_before = signal.getsignal(signal.SIGTERM)
    trainer = pl.Trainer(max_epochs=2, callbacks=[StopRequest(at_step=4)], **TRAINER_QUIET)
    with pytest.raises(SystemExit) as exit_info:
        trainer.fit(Net(), _loader())
    assert exit_info.value.code == PREEMPTED_EXIT_CODE
    assert signal.getsignal(signal.SIGTERM) == handlers_before  # handlers restored after fit
    assert find_resume_checkpoint(tmp_path) is not None

    monkeypatch.delenv("FULMEN_RUN_DIR")
    early = pl.Trainer(max_steps=1, **TRAINER_QUIET)
    early.fit(Net(), _loader())
    early.save_checkpoint(tmp_path / "early.ckpt")
    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))

    torch.manual_seed(99)
    resumed = Net()
    trainer = pl.Trainer(max_epochs=2, **TRAINER_QUIET)
    trainer.fit(resumed, _loader(), ckpt_path=tmp_path / "early.ckpt")  # the run's resume checkpoint wins
    assert trainer.global_step == 12
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


class CrashAt(pl.Callback):
    """Raises at the start of the batch after optimizer step ``at_step`` (a crash, not a preemption)."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError(f"crash at step {self.at_step}")


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("fulmen")]


def _preempt(run_dir, monkeypatch, at_step: int) -> None:
    monkeypatch.setenv("FULMEN_RUN_DIR", str(run_dir))
    with pytest.raises(SystemExit):
        pl.Trainer(max_epochs=2, callbacks=[StopRequest(at_step=at_step)], **TRAINER_QUIET).fit(Net(), _loader())


def test_resume_line_is_printed_and_a_completed_fit_drops_the_resume_checkpoint(
    tmp_path, monkeypatch, caplog
) -> None:
    _preempt(tmp_path, monkeypatch, at_step=4)
    found = find_resume_checkpoint(tmp_path)
    assert found is not None
    monkeypatch.setenv("FULMEN_RESTART_COUNT", "1")
    with caplog.at_level("INFO"):
        pl.Trainer(max_epochs=2, **TRAINER_QUIET).fit(Net(), _loader())
    assert f"Resumed from {found} at epoch 0, step 4 (restart 1, 0 steps redone)" in _messages(caplog)
    assert find_resume_checkpoint(tmp_path) is None
    assert not (tmp_path / "checkpoints").exists()  # nothing left behind after success (issue #14)


def test_a_failed_fit_keeps_the_resume_checkpoint(tmp_path, monkeypatch) -> None:
    _preempt(tmp_path, monkeypatch, at_step=4)
    found = find_resume_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match="crash at step 6"):
        pl.Trainer(max_epochs=2, callbacks=[CrashAt(6)], **TRAINER_QUIET).fit(Net(), _loader())
    assert find_resume_checkpoint(tmp_path) == found


def test_newer_last_checkpoint_of_the_run_beats_a_stale_resume_checkpoint(tmp_path, monkeypatch, caplog) -> None:
    _preempt(tmp_path, monkeypatch, at_step=3)
    stale = find_resume_checkpoint(tmp_path)
    flags = {**TRAINER_QUIET, "enable_checkpointing": True}

    def checkpoint() -> pl.callbacks.ModelCheckpoint:
        return pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=1, save_last=True)

    with pytest.raises(RuntimeError, match="crash at step 9"):
        pl.Trainer(max_epochs=2, callbacks=[checkpoint(), CrashAt(9)], **flags).fit(Net(), _loader(), ckpt_path="last")
    trainer = pl.Trainer(max_epochs=2, callbacks=[checkpoint()], **flags)
    starts: list[int] = []
    trainer.callbacks.append(_FirstStep(starts))
    with caplog.at_level("INFO"):
        trainer.fit(Net(), _loader(), ckpt_path="last")
    assert starts == [9]  # continued at step 9, not at the resume checkpoint's step 3
    last = str(tmp_path / "ckpts" / "last.ckpt")
    messages = _messages(caplog)
    assert any(m.startswith(f"Chose {last}: ") and str(stale) in m for m in messages), messages
    assert f"Resumed from {last} at epoch 1, step 9 (restart 0, 0 steps redone)" in messages



def test_dangling_last_link_counts_as_no_file_with_a_warning(tmp_path) -> None:
    """Issue 16.4: a last.ckpt link whose target is gone is "no file" (a warning names it);
    another last*.ckpt is used instead, else fit starts from scratch."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "last.ckpt").symlink_to("epoch=0-step=3.ckpt")  # target deleted, link never moved
    flags = {**TRAINER_QUIET, "enable_checkpointing": True}

    def checkpoint() -> pl.callbacks.ModelCheckpoint:
        return pl.callbacks.ModelCheckpoint(dirpath=folder, save_last="link", save_top_k=1)

    starts: list[int] = []
    with pytest.warns(UserWarning, match=r"last\.ckpt.* is a link to .*epoch=0-step=3\.ckpt.* which does not exist"):
        pl.Trainer(max_steps=2, callbacks=[checkpoint(), _FirstStep(starts)], **flags).fit(
            Net(), _loader(), ckpt_path="last"
        )
    assert starts == [0]  # nothing was loaded
    (folder / "last-v1.ckpt").symlink_to("gone.ckpt")
    pl.Trainer(max_steps=2, **TRAINER_QUIET).fit(Net(), _loader())  # a complete last file, older link names
    complete = pl.Trainer(max_steps=2, **TRAINER_QUIET)
    complete.fit(Net(), _loader())
    complete.save_checkpoint(folder / "last-v2.ckpt")
    starts.clear()
    with pytest.warns(UserWarning, match=r"last-v1\.ckpt"):
        pl.Trainer(max_steps=3, callbacks=[checkpoint(), _FirstStep(starts)], **flags).fit(
            Net(), _loader(), ckpt_path="last"
        )
    assert starts == [2]


def test_dangling_last_link_next_to_a_resume_checkpoint_resumes_from_the_resume_checkpoint(
    tmp_path, monkeypatch
) -> None:
    _preempt(tmp_path, monkeypatch, at_step=3)
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "last.ckpt").symlink_to("epoch=0-step=5.ckpt")
    flags = {**TRAINER_QUIET, "enable_checkpointing": True}
    starts: list[int] = []
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=folder, save_last="link"), _FirstStep(starts)]
    with pytest.warns(UserWarning, match="which does not exist"):
        pl.Trainer(max_epochs=1, callbacks=callbacks, **flags).fit(Net(), _loader(), ckpt_path="last")
    assert starts == [3]


class _FirstStep(pl.Callback):
    def __init__(self, out: list[int]) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.out:
            self.out.append(trainer.global_step)


class ValNet(Net):
    def validation_step(self, batch, batch_idx):
        return self.training_step(batch, batch_idx)


def test_explicit_ckpt_path_prints_lightnings_restore_lines(tmp_path, caplog) -> None:
    first = pl.Trainer(max_steps=2, **TRAINER_QUIET)
    first.fit(Net(), _loader())
    path = tmp_path / "a.ckpt"
    first.save_checkpoint(path)
    with caplog.at_level("INFO"):
        pl.Trainer(max_steps=3, **TRAINER_QUIET).fit(Net(), _loader(), ckpt_path=path)
        pl.Trainer(**TRAINER_QUIET).validate(ValNet(), _loader(), ckpt_path=path, verbose=False)
    restore = [m for m in _messages(caplog) if "checkpoint" in m]
    assert restore == [
        f"Restoring states from the checkpoint path at {path}",
        f"Restored all states from the checkpoint at {path}",
        f"Restoring states from the checkpoint path at {path}",
        f"Loaded model weights from the checkpoint at {path}",
    ]


class StopRequestAtBatch(pl.Callback):
    """Acts like a SIGTERM arriving while batch ``batch_idx`` of epoch ``epoch`` runs; records
    the batches that finished after it (the delay until the agreed stop)."""

    def __init__(self, epoch: int, batch_idx: int) -> None:
        self.at = (epoch, batch_idx)
        self.finished: list[tuple[int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.finished.append((trainer.current_epoch, batch_idx))
        if (trainer.current_epoch, batch_idx) == self.at:
            trainer.checkpoint_flow.preemption.request_stop(signal.SIGTERM)


ACCUMULATE = 3
BATCHES_PER_EPOCH = 7  # windows [0 1 2] [3 4 5] [6]: the last one is partial and ends with the epoch


def _accumulation_run(**trainer_kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=2, accumulate_grad_batches=ACCUMULATE, **TRAINER_QUIET, **trainer_kwargs)


def _accumulation_loader() -> DataLoader:
    return DataLoader(regression_data(8 * BATCHES_PER_EPOCH), batch_size=8, shuffle=True)


@pytest.mark.parametrize(
    ("signal_batch", "stop_batch"),
    [(3, 5), (4, 5), (5, 5), (6, 6)],
    ids=["1st-of-window", "2nd-of-window", "3rd-of-window", "partial-window-at-epoch-end"],
)
def test_stop_during_gradient_accumulation_waits_for_the_optimizer_step_and_resumes_exactly(
    tmp_path, monkeypatch, signal_batch: int, stop_batch: int
) -> None:
    torch.manual_seed(0)
    reference = Net()
    _accumulation_run().fit(reference, _accumulation_loader())

    monkeypatch.setenv("FULMEN_RUN_DIR", str(tmp_path))
    torch.manual_seed(0)
    stop = StopRequestAtBatch(epoch=0, batch_idx=signal_batch)
    trainer = _accumulation_run(callbacks=[stop])
    with pytest.raises(SystemExit) as exit_info:
        trainer.fit(Net(), _accumulation_loader())
    assert exit_info.value.code == PREEMPTED_EXIT_CODE
    # the stop came at the end of the signal's accumulation window, after its optimizer step
    assert stop.finished[-1] == (0, stop_batch)
    assert trainer.global_step == stop_batch // ACCUMULATE + 1

    torch.manual_seed(99)
    resumed = Net()
    trainer = _accumulation_run()
    trainer.fit(resumed, _accumulation_loader())
    assert trainer.global_step == 2 * 3
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_bit_flip_fails_fit_ckpt_path_naming_file_and_record(tmp_path) -> None:
    """Issue 16.5: fit(ckpt_path=...) checks the records' CRC32 like the resume search."""
    from fulmen.errors import CheckpointError
    from tests.core.test_saving import _flip_a_weight_bit

    trainer = pl.Trainer(max_steps=2, **TRAINER_QUIET)
    trainer.fit(Net(), _loader())
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)
    record = _flip_a_weight_bit(path)
    with pytest.raises(CheckpointError, match=rf"a\.ckpt.*record '{record}' fails its CRC32"):
        pl.Trainer(max_steps=3, **TRAINER_QUIET).fit(Net(), _loader(), ckpt_path=path)


def test_a_failed_preemption_save_exits_with_its_own_code_and_keeps_the_previous_resume_checkpoint(
    small_tmpfs, monkeypatch, capsys  # noqa: F811 - the fixture imported above
) -> None:
    """Issue 16.8: a full disk during the preemption save: exit 74 (not 1), and the resume
    checkpoint saved before stays the one a restart uses."""
    from fulmen.jobs.exit_codes import PREEMPTION_SAVE_FAILED_EXIT_CODE
    from tests.runtime.full_disk import fill

    _preempt(small_tmpfs, monkeypatch, at_step=3)
    previous = find_resume_checkpoint(small_tmpfs)
    assert previous is not None
    fill(small_tmpfs)
    with pytest.raises(SystemExit) as exit_info:
        pl.Trainer(max_epochs=2, callbacks=[StopRequest(at_step=6)], **TRAINER_QUIET).fit(Net(), _loader())
    assert exit_info.value.code == PREEMPTION_SAVE_FAILED_EXIT_CODE
    err = capsys.readouterr().err
    assert "the resume checkpoint could not be saved" in err and "no space left on device" in err
    assert f"a restart resumes from {previous}" in err
    (small_tmpfs / "filler").unlink()
    assert find_resume_checkpoint(small_tmpfs) == previous
    starts: list[int] = []
    pl.Trainer(max_epochs=2, callbacks=[_FirstStep(starts)], **TRAINER_QUIET).fit(Net(), _loader())
    assert starts == [3]
