"""torchmetrics objects logged under a real 2-rank launch (gloo, CPU), each rank on different,
uneven data: the logged epoch accuracy is the accuracy over all the data (the metric's own
synced compute()), and sync_dist is not applied on top of it (issue #17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import child_env, launch_cmd, results, run

pytest.importorskip("torchmetrics")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(150)]

SCRIPT = Path(__file__).resolve().parent / "scripts" / "metrics_fit.py"


def _accuracy_over(shards: dict[int, tuple[int, int, int]], seed_base: int) -> float:
    """Accuracy over every rank's shard, counted from the data itself."""
    from tests.integration.local.scripts.metrics_fit import shard

    right = total = 0
    for rank, (n, correct, _) in shards.items():
        preds, target = shard(n, correct, seed=seed_base + rank).tensors
        right += int((preds.squeeze(1).long() == target).sum())
        total += len(target)
    return right / total


def test_epoch_metrics_are_computed_over_the_data_of_every_rank(tmp_path: Path) -> None:
    from tests.integration.local.scripts.metrics_fit import TRAIN_SHARDS, VAL_SHARDS

    out = tmp_path / "out"
    cmd = launch_cmd("--nproc-per-node", "2", "--run-dir", str(tmp_path / "run"), str(SCRIPT), "--out", str(out))
    done = run(cmd, child_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    train_acc = _accuracy_over(TRAIN_SHARDS, seed_base=0)
    val_acc = _accuracy_over(VAL_SHARDS, seed_base=10)
    assert (train_acc, val_acc) == (15 / 28, 10 / 16)  # neither is a mean of the two ranks' accuracies
    samples = sum(n for n, _, _ in TRAIN_SHARDS.values())
    for result in results(out):
        assert result["world_size"] == 2
        assert result["train_acc"] == [pytest.approx(train_acc)] * 2, result
        assert result["val_acc"] == [pytest.approx(val_acc)] * 2, result
        assert result["train_samples"] == [samples] * 2, result  # summed once, by the metric
