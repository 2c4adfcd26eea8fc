"""Preemption in the middle of gradient accumulation resumes exactly (issue 16.2).

``accumulate_grad_batches=3``, 7 batches per rank and epoch: windows [0 1 2] [3 4 5] [6]. A
SIGTERM at every position of a window (1st, 2nd, 3rd batch) and in the partial window that ends
with the epoch stops the run at the end of that window (after its optimizer step), exit 75;
the same command started again resumes from the run's resume checkpoint and ends with weights
bit-identical to an uninterrupted run. Once in one process, once as 2-rank gloo DDP under
``launch`` (where the signal reaches rank 1 only and the accumulated gradients are per rank).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fulmen.jobs.exit_codes import PREEMPTED_EXIT_CODE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SCRIPT = Path(__file__).with_name("accumulation_script.py")
# (epoch, batch the signal arrives in) -> the last batch before the stop
POSITIONS = {
    "1st-of-window": ((0, 3), (0, 5)),
    "2nd-of-window": ((0, 4), (0, 5)),
    "3rd-of-window": ((0, 5), (0, 5)),
    "partial-window-at-epoch-end": ((0, 6), (0, 6)),
    "2nd-of-window-second-epoch": ((1, 1), (1, 2)),
}


def _command(world_size: int, run_dir: Path, out: Path, *args: str) -> list[str]:
    script = [str(SCRIPT), str(out), *args]
    if world_size == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "fulmen.launcher", "launch", "--nproc-per-node", str(world_size),
            "--run-dir", str(run_dir), *script]


def _run(world_size: int, run_dir: Path, out: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**env, "FULMEN_RUN_DIR": str(run_dir), "XDG_STATE_HOME": str(run_dir.parent / "state")}
    for name in ("RANK", "WORLD_SIZE", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.run(_command(world_size, run_dir, out, *args), env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def _batches(out: Path, rank: int) -> list[list]:
    return [json.loads(line) for line in (out / f"batches_rank{rank}.jsonl").read_text().splitlines()]


def _weights(out: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"final_rank{rank}.pt", weights_only=True)


@pytest.fixture(scope="module", params=[1, 2], ids=["single-process", "ddp-2-ranks"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, resume_env: dict[str, str]):
    """The world size and the weights of its uninterrupted run."""
    world_size = request.param
    base = tmp_path_factory.mktemp(f"uninterrupted-{world_size}")
    proc = _run(world_size, base / "run", base / "out", resume_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [b[:3] for b in _batches(base / "out", 0)][-1] == [1, 6, 6]  # 2 epochs x 3 optimizer steps
    return world_size, _weights(base / "out", 0)


@pytest.mark.parametrize("position", list(POSITIONS))
def test_sigterm_anywhere_in_an_accumulation_window_resumes_bit_identical(
    world: tuple[int, dict[str, torch.Tensor]], position: str, tmp_path: Path, resume_env: dict[str, str]
) -> None:
    world_size, expected = world
    (epoch, batch), (stop_epoch, stop_batch) = POSITIONS[position]
    run_dir, out = tmp_path / "run", tmp_path / "out"
    signal_args = ("--signal-epoch", str(epoch), "--signal-batch", str(batch), "--signal-rank", str(world_size - 1))
    proc = _run(world_size, run_dir, out, resume_env, *signal_args)
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    for rank in range(world_size):  # every rank ran to the end of the window, then stopped
        assert _batches(out, rank)[-1][:2] == [stop_epoch, stop_batch], (rank, _batches(out, rank)[-3:])
    saved = sorted((run_dir / "checkpoints" / "resume").glob("resume-step=*.ckpt"))
    assert len(saved) == 1, saved
    assert not (out / "final_rank0.pt").exists()

    proc = _run(world_size, run_dir, out, resume_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(world_size):
        final = _weights(out, rank)
        assert final.keys() == expected.keys()
        for key in expected:
            assert torch.equal(final[key], expected[key]), (rank, key, (final[key] - expected[key]).abs().max())


@pytest.mark.parametrize("world", [1], indirect=True, ids=["single-process"])
def test_preempted_run_whose_hparams_hold_namespace_and_dataclass_resumes(
    world: tuple[int, dict[str, torch.Tensor]], tmp_path: Path, resume_env: dict[str, str]
) -> None:
    """Issue 16.3: the resume checkpoint loads with the safe loader, hparams back as their types
    (one process: how hparams are stored does not depend on the number of ranks)."""
    world_size, expected = world
    run_dir, out = tmp_path / "run", tmp_path / "out"
    proc = _run(world_size, run_dir, out, resume_env, "--config-hparams", "--signal-epoch", "0", "--signal-batch", "4")
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    proc = _run(world_size, run_dir, out, resume_env, "--config-hparams")
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads((out / "loaded_hparams.json").read_text())
    assert seen == {"args": "Namespace", "config": "Config", "out": type(out).__name__}
    final = _weights(out, 0)
    assert all(torch.equal(final[key], expected[key]) for key in expected)
