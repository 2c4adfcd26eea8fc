"""Run every example as a user would (a subprocess in a fresh folder) and check what it reports.

Each threshold is one a broken trainer misses: no optimizer steps leave the classifiers at
chance level, the autoencoder at the mean-guess error and the GAN's samples near 0; a schedule
that is never stepped leaves the LR flat. The examples print their final result as the last
lines of stdout; these tests parse those lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"

pytestmark = pytest.mark.slow


def run_example(name: str, cwd: Path, env: dict[str, str], *args: str) -> str:
    # One intra-op thread: these models are tiny, and on a shared 2-core machine running the
    # suite with -n 3, extra threads only contend (a 30x slowdown was measured).
    env = dict(env, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def final_value(stdout: str, label: str) -> float:
    match = re.search(rf"^{re.escape(label)}: ([0-9.]+)", stdout, flags=re.MULTILINE)
    assert match, f"no line starting with {label!r} in the output:\n{stdout[-2000:]}"
    return float(match.group(1))


def test_minimal_classifier(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = run_example("minimal_classifier", tmp_path, subprocess_env)
    assert out.rstrip().splitlines()[-1].startswith("Final test accuracy:")
    assert final_value(out, "Final test accuracy") > 0.85  # chance is 0.25
    version = tmp_path / "lightning_logs" / "version_0"
    files = os.listdir(version)
    assert "hparams.yaml" in files and any(f.startswith("events.out.tfevents.") for f in files)


def test_torchmetrics_classifier(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    pytest.importorskip("torchmetrics")  # the optional extra fulmen[metrics]
    out = run_example("torchmetrics_classifier", tmp_path, subprocess_env)
    assert out.rstrip().splitlines()[-1].startswith("Final test accuracy:")
    assert final_value(out, "Final test accuracy") > 0.85  # chance is 0.25
    assert final_value(out, "Final test F1") > 0.85
    assert final_value(out, "Last epoch's train accuracy") > 0.85


def test_autoencoder(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = run_example("autoencoder", tmp_path, subprocess_env)
    match = re.search(r"^Final validation reconstruction MSE: ([0-9.]+) \(predicting the mean point: ([0-9.]+)\)",
                      out, flags=re.MULTILINE)  # fmt: skip
    assert match, out[-2000:]
    mse, baseline = float(match.group(1)), float(match.group(2))
    assert mse < 0.1 * baseline


def test_cosine_warmup_classifier(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = run_example("cosine_warmup_classifier", tmp_path, subprocess_env)
    assert final_value(out, "Final test accuracy") > 0.9  # chance is 0.125
    match = re.search(
        r"Learning rate: (\S+) at the first batch, peak (\S+) at batch (\d+), (\S+) at the last batch "
        r"\((\d+) optimizer steps for (\d+) batches\)",
        out,
    )
    assert match, out[-2000:]
    first, peak, last = float(match.group(1)), float(match.group(2)), float(match.group(4))
    steps, batches = int(match.group(5)), int(match.group(6))
    assert peak == pytest.approx(3e-3, rel=0.05)  # warm-up reaches the base LR...
    assert first < 0.2 * peak and last < 0.02 * peak  # ...from near zero, and cosine decays to ~0
    assert steps == batches // 2  # accumulate_grad_batches=2


def test_gan(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = run_example("gan", tmp_path, subprocess_env)
    match = re.search(r"^Final generated samples: mean (-?[0-9.]+) \(target 3.00\), std ([0-9.]+)", out, re.MULTILINE)
    assert match, out[-2000:]
    mean, std = float(match.group(1)), float(match.group(2))
    assert abs(mean - 3.0) < 0.3
    assert 0.25 < std < 0.8  # target 0.5; a collapsed generator gives ~0


def test_datamodule(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    out = run_example("datamodule", tmp_path, subprocess_env, "--data-dir", str(tmp_path / "data"))
    assert (tmp_path / "data" / "ring.csv").is_file()
    # written by prepare_data for fit, found again for test
    assert out.index("Dataset written:") < out.index("Dataset found:")
    assert final_value(out, "Final test accuracy") > 0.9  # the larger class is ~0.5


def test_seeds_era_script_runs_unchanged(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """A 0.x/1.x script (optimizer_idx GAN, tbptt LSTM, test_tube Experiment) trains under fulmen."""
    result = subprocess.run([sys.executable, str(EXAMPLES / "seeds_era.py")], cwd=tmp_path,
                            env=dict(subprocess_env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert abs(final_value(out, "GAN sample mean") - 3.0) < 0.5  # an untrained generator sits near 0
    assert 0.1 < final_value(out, "GAN sample std") < 1.5
    mse = re.search(r"^LSTM next-step MSE: ([0-9.]+) \(predicting zero: ([0-9.]+)\)", out, flags=re.MULTILINE)
    assert mse and float(mse.group(1)) < 0.2 * float(mse.group(2))
    version = tmp_path / "seeds_logs" / "gan" / "version_0"
    rows = (version / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("g_loss,d_loss") and len(rows) >= 3  # the Experiment got both optimizers' losses
    assert "lr" in (version / "meta_tags.csv").read_text()  # exp.argparse(hparams)
    for legacy, modern in [("experiment", "logger=TensorBoardLogger"), ("max_nb_epochs", "max_epochs")]:
        assert f"Trainer({legacy}=...) is a legacy flag" in result.stderr and modern in result.stderr
    assert "optimizer_idx" in result.stderr and "truncated_bptt_steps" in result.stderr


def test_lightning_cli(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The LightningCLI example trains from its config file; the command line overrides it; the
    run's config is saved beside its logs and reproduces the run."""
    config = str(EXAMPLES / "lightning_cli.yaml")
    out = run_example("lightning_cli", tmp_path, subprocess_env, "fit", "--config", config, "--model.hidden=16")
    assert final_value(out, "Final validation accuracy") > 0.9  # chance is 0.25
    assert "(world size 1)" in out
    saved = tmp_path / "lightning_logs" / "version_0" / "config.yaml"
    text = saved.read_text()
    assert text.startswith("# fulmen==") and "hidden: 16" in text and "seed_everything: 7" in text
    printed = run_example("lightning_cli", tmp_path, subprocess_env, "fit", "--config", str(saved), "--print_config")
    assert printed.split("\n", 1)[1] == text.split("\n", 1)[1]  # the same config, header aside
