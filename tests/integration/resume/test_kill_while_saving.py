"""A process SIGKILLed at random moments while saving never leaves a broken final file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

from fulmen.runtime import checkpoint as ck
from fulmen.runtime import checkpoint_recovery as recovery
from fulmen.runtime import resume_checkpoint as rc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The child continues from the newest valid resume checkpoint (as a restarted job does) and
# saves in a tight loop, through the resume path, to a fixed ``last.ckpt`` name, and to
# ``background.ckpt`` with the background fsync+rename a Trainer uses during fit.
CHILD = textwrap.dedent(
    """
    import sys, torch
    from fulmen.runtime import checkpoint as ck
    from fulmen.runtime import checkpoint_saver as saver
    from fulmen.runtime import resume_checkpoint as rc
    run_dir = sys.argv[1]
    found = rc.find_resume_checkpoint(run_dir)
    step = ck.load_checkpoint(found)["global_step"] if found else 0
    print("ready", step, flush=True)
    while True:
        step += 1
        payload = {"global_step": step, "state_dict": {"w": torch.full((512, 1024), float(step))}}
        rc.save_resume_checkpoint(payload, run_dir)
        ck.save_atomic(payload, run_dir + "/last.ckpt")
        saver.save_in_background(payload, run_dir + "/background.ckpt")  # as a Trainer saves during fit
    """
)


def _check_final_files(run_dir: Path) -> int:
    """Every file under a final name loads and holds what its name says; return newest step."""
    directory = rc.resume_checkpoint_dir(run_dir)
    newest = 0
    for path in rc.list_resume_checkpoints(directory):
        loaded = ck.load_checkpoint(path, verify_checksums=True)
        step = loaded["global_step"]
        assert path.name == rc.resume_checkpoint_name(step)
        assert torch.equal(loaded["state_dict"]["w"], torch.full((512, 1024), float(step)))
        newest = max(newest, step)
    for name in ("last.ckpt", "background.ckpt"):
        if (run_dir / name).exists():
            loaded = ck.load_checkpoint(run_dir / name, verify_checksums=True)
            assert torch.equal(loaded["state_dict"]["w"], torch.full((512, 1024), float(loaded["global_step"])))
    return newest


def test_sigkill_at_random_moments_never_leaves_truncated_final_file(
    tmp_path: Path, python_exe: str, subprocess_env: dict[str, str]
) -> None:
    rng = random.Random(1234)
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    run_dir = tmp_path / "run"
    previous_newest = 0
    kills = 0
    for _ in range(8):
        child = subprocess.Popen(
            [python_exe, str(script), str(run_dir)], stdout=subprocess.PIPE, env=subprocess_env, text=True
        )
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready and ready[0] == "ready", "child did not start"
        # the child continued from the newest valid checkpoint the previous kill left
        assert int(ready[1]) == previous_newest
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        kills += 1
        # a kill during the fsync leaves a complete temp file: the next start finishes that save
        # (never a broken one: every recovered file must pass the same checks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            recovery.recover_unfinished_saves(rc.resume_checkpoint_dir(run_dir))
            recovery.recover_unfinished_saves(run_dir)
        assert not [p.name for p in run_dir.rglob(".*fulmen-tmp-*")]
        newest = _check_final_files(run_dir)
        assert newest >= previous_newest
        found = rc.find_resume_checkpoint(run_dir)
        if newest:
            assert found is not None and ck.load_checkpoint(found)["global_step"] == newest
        previous_newest = newest
    assert kills == 8 and previous_newest > 0
