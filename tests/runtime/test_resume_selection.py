"""Which checkpoint fit continues from: the newest progress of the run wins (issue #16 item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fulmen.runtime import resume_checkpoint as rc
from fulmen.runtime import resume_selection as rs
from fulmen.runtime.resume_selection import Candidate, CheckpointProgress


def _fulmen_file(step: int, epoch: int, batch_idx: int, *, epoch_processed: bool = False, **extra: object) -> dict:
    """A checkpoint dict with our loop state where dump_checkpoint puts it."""
    loop = {"epoch": epoch, "batch_idx": batch_idx, "global_step": step, "epoch_processed": epoch_processed}
    return {
        "global_step": step,
        "epoch": epoch,
        "loops": {"fit_loop": {"state_dict": {"fulmen": loop}}},
        "state_dict": {"w": torch.zeros(4)},
        **extra,
    }


def test_progress_of_fulmen_file_counts_an_ended_epoch_as_the_next_one() -> None:
    assert rs.progress_of(_fulmen_file(40, 3, 10)) == CheckpointProgress(40, 3, 10)
    assert rs.progress_of(_fulmen_file(40, 3, 10, epoch_processed=True)) == CheckpointProgress(40, 4, 0)


def test_progress_of_lightning_file_reads_its_counters() -> None:
    lightning = {
        "global_step": 7,
        "epoch": 1,
        "loops": {
            "fit_loop": {
                "epoch_progress": {"current": {"completed": 1}},
                "epoch_loop.batch_progress": {"current": {"processed": 3}},
            }
        },
    }
    assert rs.progress_of(lightning) == CheckpointProgress(7, 1, 3)
    assert rs.progress_of({"global_step": 5}) == CheckpointProgress(5, 0, 0)  # a bare file


def test_progress_compares_step_then_epoch_then_batch() -> None:
    assert CheckpointProgress(40, 3, 10) > CheckpointProgress(4, 0, 4)
    assert CheckpointProgress(12, 1, 0) > CheckpointProgress(12, 0, 12)  # same step, later place


def _resume(step: int | None) -> Candidate:
    progress = None if step is None else CheckpointProgress(step, 0, step)
    return Candidate("/run/checkpoints/resume/r.ckpt", "the resume checkpoint of this run", progress, True)


def _requested(step: int | None, *, of_this_run: bool = True) -> Candidate:
    progress = None if step is None else CheckpointProgress(step, 0, step)
    return Candidate("/run/lightning_logs/version_0/checkpoints/last.ckpt", 'ckpt_path="last"', progress, of_this_run)


def test_newer_checkpoint_of_the_run_beats_a_stale_resume_checkpoint() -> None:
    choice = rs.choose_fit_checkpoint(_resume(4), _requested(40))
    assert choice is not None and choice.path.endswith("last.ckpt")
    assert choice.automatic and choice.compared
    assert "newest progress wins" in choice.reason and "step 4" in choice.reason and "step 40" in choice.reason


def test_resume_checkpoint_wins_when_newer_or_on_a_tie() -> None:
    assert rs.choose_fit_checkpoint(_resume(40), _requested(4)).path.endswith("r.ckpt")
    tie = rs.choose_fit_checkpoint(_resume(40), _requested(40))
    assert tie.path.endswith("r.ckpt") and "tie" in tie.reason


def test_checkpoint_outside_the_run_never_beats_the_resume_checkpoint() -> None:
    # a fine-tune's starting file records the pre-training's steps: not comparable (DESIGN)
    choice = rs.choose_fit_checkpoint(_resume(4), _requested(100_000, of_this_run=False))
    assert choice.path.endswith("r.ckpt") and "not a checkpoint of this run" in choice.reason


def test_unreadable_requested_file_does_not_win() -> None:
    assert rs.choose_fit_checkpoint(_resume(4), _requested(None)).path.endswith("r.ckpt")


def test_without_a_resume_checkpoint_ckpt_path_is_used_as_given() -> None:
    choice = rs.choose_fit_checkpoint(None, _requested(40))
    assert choice.path.endswith("last.ckpt") and not choice.automatic
    assert rs.choose_fit_checkpoint(None, None) is None
    only = rs.choose_fit_checkpoint(_resume(4), None)
    assert only.path.endswith("r.ckpt") and only.automatic and not only.compared


def test_inside_run_excludes_the_code_snapshot(tmp_path: Path) -> None:
    assert rs.is_inside_run(tmp_path / "lightning_logs" / "x.ckpt", tmp_path)
    assert not rs.is_inside_run(tmp_path / "code" / "pretrained.ckpt", tmp_path)
    assert not rs.is_inside_run(tmp_path.parent / "elsewhere.ckpt", tmp_path)


def test_resumed_message_counts_steps_redone_from_the_newest_known_step() -> None:
    choice = rs.ResumeChoice("/r/a.ckpt", CheckpointProgress(40, 3, 10), True, "why", newest_known_step=40)
    assert rs.resumed_message(choice, 2) == "Resumed from /r/a.ckpt at epoch 3, step 40 (restart 2, 0 steps redone)"
    behind = rs.ResumeChoice("/r/a.ckpt", CheckpointProgress(30, 2, 10), True, "why", newest_known_step=44)
    assert rs.resumed_message(behind, 0).endswith("(restart 0, 14 steps redone)")


def test_select_reads_real_files_and_counts_a_broken_newer_resume_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    good = rc.save_resume_checkpoint(_fulmen_file(4, 0, 4), run)
    last = run / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save(_fulmen_file(40, 3, 10), last)
    choice = rs.select_fit_checkpoint(run, good, str(last), 'ckpt_path="last"', True)
    assert choice.path == str(last) and choice.progress == CheckpointProgress(40, 3, 10)

    # a resume file at step 60 that the search skipped (corrupted) still tells how far the run got
    broken = rc.resume_checkpoint_dir(run) / rc.resume_checkpoint_name(60)
    broken.write_bytes(b"PK\x03\x04 not a checkpoint")
    choice = rs.select_fit_checkpoint(run, good, str(last), 'ckpt_path="last"', True)
    assert rs.resumed_message(choice, 1).endswith("(restart 1, 20 steps redone)")


def test_select_with_an_unreadable_candidate_warns_and_keeps_the_resume_checkpoint(tmp_path: Path) -> None:
    good = rc.save_resume_checkpoint(_fulmen_file(4, 0, 4), tmp_path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"nonsense")
    with pytest.warns(RuntimeWarning, match="junk.ckpt"):
        choice = rs.select_fit_checkpoint(tmp_path, good, str(junk), "ckpt_path", False)
    assert choice.path == str(good)


def test_recorded_checkpoint_dirs_come_from_callback_states(tmp_path: Path) -> None:
    path = tmp_path / "r.ckpt"
    states = {"ModelCheckpoint{'monitor': None}": {"dirpath": "/run/lightning_logs/version_0/checkpoints"}, "Other": {}}
    torch.save(_fulmen_file(4, 0, 4, callbacks=states), path)
    assert rs.recorded_checkpoint_dirs(path) == ["/run/lightning_logs/version_0/checkpoints"]
