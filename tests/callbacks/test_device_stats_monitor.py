"""DeviceStatsMonitor: arguments, the no-logger error, separators, the CUDA path, and its cost.

Which hooks log, at which steps and with which keys is compared with Lightning 2.6.6 in the
compat scenario ``device_stats_monitor``; these are the edges around it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import fulmen as pl
from fulmen.callbacks import DeviceStatsMonitor
from fulmen.errors import MisconfigurationException
from fulmen.loggers.logger import Logger


class Recorder(Logger):
    def __init__(self, separator: str = "/") -> None:
        self.calls: list[tuple[dict[str, float], int | None]] = []
        self._separator = separator

    @property
    def name(self) -> str:
        return "rec"

    @property
    def version(self) -> int:
        return 0

    @property
    def group_separator(self) -> str:
        return self._separator

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        self.calls.append((dict(metrics), step))


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)


def _fit(tmp_path: Path, monitor: DeviceStatsMonitor, logger: Any, **flags: Any) -> None:
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, logger=logger, callbacks=[monitor],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **flags)  # fmt: skip
    trainer.fit(Regression(), _loader())


@pytest.mark.parametrize("value", ["yes", 1, 0.5])
def test_cpu_stats_must_be_none_or_bool(value: Any) -> None:
    with pytest.raises(ValueError, match=r"cpu_stats=.*expected None, True or False\.\nHINT"):
        DeviceStatsMonitor(cpu_stats=value)


def test_fit_without_logger_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MisconfigurationException, match=r"Trainer\(logger=False\).*\nHINT: give the Trainer a logger"):
        _fit(tmp_path, DeviceStatsMonitor(), False)


def test_keys_use_each_loggers_separator_and_the_logger_step(tmp_path: Path) -> None:
    slash, dot = Recorder("/"), Recorder(".")
    _fit(tmp_path, DeviceStatsMonitor(), [slash, dot], log_every_n_steps=2)
    assert [step for _, step in slash.calls] == [1, 1, 3, 3]
    assert sorted(slash.calls[0][0]) == [
        "DeviceStatsMonitor.on_train_batch_start/cpu_percent",
        "DeviceStatsMonitor.on_train_batch_start/cpu_swap_percent",
        "DeviceStatsMonitor.on_train_batch_start/cpu_vm_percent",
    ]
    assert sorted(dot.calls[1][0])[0] == "DeviceStatsMonitor.on_train_batch_end.cpu_percent"
    assert all(0.0 <= v <= 100.0 for metrics, _ in slash.calls for v in metrics.values())


def _cuda_trainer(logger: Recorder) -> SimpleNamespace:
    accelerator = SimpleNamespace(get_device_stats=lambda device: {"allocated_bytes.all.current": 4096})
    return SimpleNamespace(
        log_every_n_steps=1, should_stop=False, loggers=[logger], accelerator=accelerator,
        strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), progress=SimpleNamespace(batches_that_stepped=5),
    )  # fmt: skip


@pytest.mark.parametrize(("cpu_stats", "extra"), [(None, set()), (False, set()), (True, {"cpu_percent"})])
def test_cuda_runs_log_the_accelerators_stats_and_cpu_stats_on_request(cpu_stats: bool | None, extra: set[str]) -> None:
    logger = Recorder()
    DeviceStatsMonitor(cpu_stats=cpu_stats).on_train_batch_start(_cuda_trainer(logger), None, None, 0)  # type: ignore[arg-type]
    (metrics, step), = logger.calls
    names = {key.split("/", 1)[1] for key in metrics}
    assert step == 5
    assert names >= {"allocated_bytes.all.current", *extra}
    assert ("cpu_vm_percent" in names) is bool(cpu_stats)


def test_unused_callbacks_are_never_imported(tmp_path: Path) -> None:
    """A fit without these callbacks loads neither their modules nor rich (they cost nothing).

    ``rich_progress`` itself (no rich import in it) is loaded with the TQDM bar's module, which
    registers it under Lightning's path ``callbacks.progress.rich_progress``."""
    script = f"""
import sys, torch, fulmen as pl
from torch.utils.data import DataLoader, TensorDataset
class M(pl.LightningModule):
    def __init__(self):
        super().__init__(); self.l = torch.nn.Linear(2, 1)
    def training_step(self, b, i): return self.l(b[0]).sum()
    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)
pl.Trainer(default_root_dir={str(tmp_path)!r}, max_epochs=1, logger=False).fit(M(), DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))
names = ("device_stats_monitor", "on_exception_checkpoint", "rich_columns", "rich_model_summary")
print(sorted(m for m in sys.modules if m.startswith("fulmen.") and m.rsplit(".", 1)[-1] in names) + sorted(m for m in sys.modules if m == "rich" or m.startswith("rich.")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
