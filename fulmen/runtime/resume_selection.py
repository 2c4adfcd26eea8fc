"""Which checkpoint ``fit`` continues from when a run has more than one: the newest progress wins.

A run that was preempted has a resume checkpoint (``resume_checkpoint.py``); the script may
also ask for a file with ``fit(ckpt_path=...)``, typically ``"last"``. When both belong to this
run, the kind of file says nothing about which is newer: preempted at step 4, resumed, saved
``last.ckpt`` at step 40 and crashed, the run must continue at step 40, not redo 36 steps.
So the candidates' loop state is compared (global step, then epoch, then batch in the epoch)
and the newest wins; on a tie the resume checkpoint wins (it holds the exact data position).

A ``ckpt_path`` that is *not* of this run (a file elsewhere: the start of a fine-tune) never
beats the run's resume checkpoint, whatever its step count (DESIGN, resume precedence:
otherwise a requeued fine-tune restarts from the original weights). ``ckpt_path="last"`` is of
this run by definition (the Trainer's own ModelCheckpoint files); a path is when it lies inside
the run directory, outside its code snapshot.

Everything here except ``read_progress`` and ``select_fit_checkpoint`` is pure.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from fulmen.runtime.checkpoint import PathLike
from fulmen.runtime.checkpoint_lightning import FULMEN_LOOP_KEY


class CheckpointProgress(NamedTuple):
    """How far training had got when a checkpoint was taken; tuples compare in this order."""

    global_step: int
    epoch: int
    batch_in_epoch: int

    def describe(self) -> str:
        return f"epoch {self.epoch}, step {self.global_step}"


def progress_of(checkpoint: Mapping[str, Any]) -> CheckpointProgress:
    """The loop state of a checkpoint dict (a fulmen file, or a Lightning one by its counters).

    A file saved while an epoch's end hooks ran counts as the start of the next epoch, which is
    where a resume from it continues.
    """
    global_step = int(checkpoint.get("global_step", 0))
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    ours = (fit_loop.get("state_dict") or {}).get(FULMEN_LOOP_KEY, fit_loop.get(FULMEN_LOOP_KEY))
    if isinstance(ours, Mapping):
        epoch, batch = int(ours.get("epoch", 0)), int(ours.get("batch_idx", 0))
        if ours.get("epoch_processed"):
            epoch, batch = epoch + 1, 0
        return CheckpointProgress(global_step, epoch, batch)
    epochs = (fit_loop.get("epoch_progress") or {}).get("current") or {}
    batches = (fit_loop.get("epoch_loop.batch_progress") or {}).get("current") or {}
    epoch = int(epochs.get("completed", checkpoint.get("epoch", 0)))
    return CheckpointProgress(global_step, epoch, int(batches.get("processed", 0)))


def _peek(path: PathLike) -> Mapping[str, Any] | None:
    """The checkpoint dict of ``path`` without reading its tensors (memory-mapped,
    ``weights_only``), or None (with a warning) when it cannot be read."""
    try:
        try:
            checkpoint = torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            checkpoint = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable candidate just cannot win on progress
        warnings.warn(
            f"Could not read the training progress of checkpoint {os.fspath(path)!r} "
            f"({type(err).__name__}: {err}); it is not compared with the run's resume checkpoint.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return checkpoint if isinstance(checkpoint, Mapping) else None


def read_progress(path: PathLike) -> CheckpointProgress | None:
    """The progress of the checkpoint file ``path``, or None (with a warning) when it cannot be
    read. Cheap even for a large model: the tensors are not read."""
    checkpoint = _peek(path)
    return progress_of(checkpoint) if checkpoint is not None else None


def recorded_checkpoint_dirs(path: PathLike) -> list[str]:
    """The folders the ModelCheckpoint callbacks saved into, as recorded in checkpoint ``path``.

    Why: before the resume checkpoint is restored, a default ModelCheckpoint folder follows a
    fresh logger version (``version_1``), not the run's (``version_0``); ``ckpt_path="last"``
    must still find the ``last.ckpt`` this run wrote.
    """
    checkpoint = _peek(path) or {}
    states = checkpoint.get("callbacks") or {}
    found = [state.get("dirpath") for state in states.values() if isinstance(state, Mapping)]
    return [d for d in found if isinstance(d, str) and d]


def is_inside_run(path: PathLike, run_dir: PathLike) -> bool:
    """Whether ``path`` lies inside ``run_dir`` but not in its code snapshot (``code/``)."""
    file, root = Path(os.path.abspath(path)), Path(os.path.abspath(run_dir))
    return file.is_relative_to(root) and not file.is_relative_to(root / "code")


@dataclass(frozen=True)
class Candidate:
    """A checkpoint fit could continue from. ``label`` names it for a person ("the resume
    checkpoint of this run", 'ckpt_path="last"'); ``progress`` is None when unreadable."""

    path: str
    label: str
    progress: CheckpointProgress | None
    of_this_run: bool


@dataclass(frozen=True)
class ResumeChoice:
    """The file fit continues from, and why. ``automatic`` is True when the run's own restart
    logic picked it (a resume checkpoint existed), False for a plain ``fit(ckpt_path=...)``."""

    path: str
    progress: CheckpointProgress | None
    automatic: bool
    reason: str
    newest_known_step: int | None = None  # the furthest step any checkpoint of this run records
    compared: bool = False  # True when another candidate was passed over (worth saying why)


def choose_fit_checkpoint(resume: Candidate | None, requested: Candidate | None) -> ResumeChoice | None:
    """Apply the rule of this module's docstring to the run's resume checkpoint and ``ckpt_path``'s file."""
    if resume is None:
        if requested is None:
            return None
        return ResumeChoice(requested.path, requested.progress, False, f"{requested.label} was given")
    newest = max((c.progress.global_step for c in (resume, requested) if c and c.progress), default=None)
    if requested is None:
        return ResumeChoice(resume.path, resume.progress, True, f"{resume.label} is the only candidate", newest)
    if not requested.of_this_run:
        reason = (
            f"{resume.label} beats {requested.label} ({requested.path}), which is not a checkpoint of this run"
        )
        return ResumeChoice(resume.path, resume.progress, True, reason, newest, compared=True)
    if requested.progress is not None and (resume.progress is None or requested.progress > resume.progress):
        old = resume.progress.describe() if resume.progress else "progress unknown"
        reason = (
            f"{requested.label} ({requested.progress.describe()}) is newer than {resume.label} "
            f"({resume.path}, {old}): the newest progress wins"
        )
        return ResumeChoice(requested.path, requested.progress, True, reason, newest, compared=True)
    new = requested.progress.describe() if requested.progress else "progress unknown"
    reason = (
        f"{resume.label} is not older than {requested.label} ({requested.path}, {new}): "
        "the newest progress wins, the resume checkpoint on a tie"
    )
    return ResumeChoice(resume.path, resume.progress, True, reason, newest, compared=True)


def select_fit_checkpoint(
    run_dir: PathLike | None,
    resume_path: PathLike | None,
    requested_path: str | None,
    requested_label: str,
    requested_is_last: bool,
) -> ResumeChoice | None:
    """Read the candidates' progress and choose (see above).

    ``resume_path`` is the run's valid resume checkpoint (``find_resume_checkpoint``) or None;
    ``requested_path`` the file ``ckpt_path`` resolved to, ``requested_label`` how to name it,
    ``requested_is_last`` whether it came from ``ckpt_path="last"``.
    """
    from fulmen.runtime import resume_checkpoint as rc

    resume = None
    if resume_path is not None:
        resume = Candidate(os.fspath(resume_path), "the resume checkpoint of this run", read_progress(resume_path), True)
    requested = None
    if requested_path is not None:
        of_run = requested_is_last or (run_dir is not None and is_inside_run(requested_path, run_dir))
        # the progress is only needed to compare two files of this run
        progress = read_progress(requested_path) if resume is not None and of_run else None
        requested = Candidate(requested_path, requested_label, progress, of_run)
    choice = choose_fit_checkpoint(resume, requested)
    if choice is not None and choice.automatic and run_dir is not None:
        # a newer resume file the search skipped as broken still says how far the run had got
        named = [rc.resume_checkpoint_step(p) for p in rc.list_resume_checkpoints(rc.resume_checkpoint_dir(run_dir))]
        newest = max([s for s in (*named, choice.newest_known_step) if s is not None], default=None)
        choice = dataclasses.replace(choice, newest_known_step=newest)
    return choice


def resumed_message(choice: ResumeChoice, restart_count: int) -> str:
    """The one line rank 0 prints on an automatic resume (issue #14)."""
    progress = choice.progress
    where = progress.describe() if progress is not None else "an unknown step"
    redone = 0
    if progress is not None and choice.newest_known_step is not None:
        redone = max(0, choice.newest_known_step - progress.global_step)
    return f"Resumed from {choice.path} at {where} (restart {restart_count}, {redone} steps redone)"


def restore_start_message(choice: ResumeChoice | None, path: str) -> str | None:
    """What rank 0 prints before loading ``path``: why it was chosen when another candidate was
    passed over; Lightning's line for a plain ``ckpt_path``; nothing for an uncontested resume."""
    if choice is not None and choice.automatic:
        return f"Chose {path}: {choice.reason}." if choice.compared else None
    return f"Restoring states from the checkpoint path at {path}"  # Lightning's words


def restore_end_message(choice: ResumeChoice | None, path: str, fn: str, restart_count: int) -> str:
    """What rank 0 prints once ``path`` is restored: the resume line on an automatic resume,
    else Lightning's ("Restored all states" when fitting, "Loaded model weights" otherwise)."""
    if fn != "fit":
        return f"Loaded model weights from the checkpoint at {path}"
    if choice is not None and choice.automatic:
        return resumed_message(choice, restart_count)
    return f"Restored all states from the checkpoint at {path}"
