"""CPU statistics with Lightning's names, from psutil or (without it) Linux's /proc."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fulmen.utilities import device_stats
from fulmen.utilities.device_stats import CPU_PERCENT, CPU_SWAP_PERCENT, CPU_VM_PERCENT, get_cpu_stats

_MEMINFO = """MemTotal:       1000 kB
MemFree:         100 kB
MemAvailable:    250 kB
SwapTotal:       400 kB
SwapFree:        300 kB
HugePages_Total:       0
"""


def _fake_proc(tmp_path: Path, stat_line: str) -> Path:
    (tmp_path / "meminfo").write_text(_MEMINFO)
    (tmp_path / "stat").write_text(stat_line + "\ncpu0 1 2 3 4\n")
    return tmp_path


@pytest.fixture
def without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    monkeypatch.setitem(sys.modules, "psutil", None)
    monkeypatch.setattr(device_stats, "_last_cpu_times", None)


def test_proc_figures_follow_psutil_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_psutil: None) -> None:
    proc = _fake_proc(tmp_path, "cpu  100 0 100 700 100 0 0 0 0 0")
    monkeypatch.setattr(device_stats, "_PROC", proc)
    first = get_cpu_stats()
    # RAM: (total - available) / total; swap: (total - free) / total; CPU: busy / total since boot
    assert first == {CPU_VM_PERCENT: 75.0, CPU_PERCENT: 20.0, CPU_SWAP_PERCENT: 25.0}
    # the next call measures the interval since the previous one: 50 busy of 100 jiffies
    (proc / "stat").write_text("cpu  150 0 100 750 100 0 0 0 0 0\n")
    assert get_cpu_stats()[CPU_PERCENT] == 50.0


def test_no_swap_and_an_idle_interval_give_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_psutil: None) -> None:
    proc = _fake_proc(tmp_path, "cpu  1 0 1 8 0 0 0 0")
    (proc / "meminfo").write_text("MemTotal: 10 kB\nMemFree: 5 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
    monkeypatch.setattr(device_stats, "_PROC", proc)
    stats = get_cpu_stats()
    assert stats[CPU_SWAP_PERCENT] == 0.0 and stats[CPU_VM_PERCENT] == 50.0  # MemFree when no MemAvailable
    assert get_cpu_stats()[CPU_PERCENT] == 0.0  # no time passed: no division by zero


def test_without_psutil_or_proc_the_error_names_psutil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_psutil: None) -> None:
    monkeypatch.setattr(device_stats, "_PROC", tmp_path / "missing")
    with pytest.raises(ModuleNotFoundError, match=r"psutil.*\n.*HINT: pip install psutil"):
        get_cpu_stats()


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc")
def test_real_machine_figures_are_percentages() -> None:
    stats = get_cpu_stats()
    assert sorted(stats) == sorted([CPU_PERCENT, CPU_SWAP_PERCENT, CPU_VM_PERCENT])
    assert all(0.0 <= value <= 100.0 for value in stats.values()), stats


def test_cuda_stats_are_torch_memory_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulmen.runtime.trainer_accelerator import CPUAccelerator, CUDAAccelerator

    seen = []
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda device: seen.append(device) or {"allocated_bytes.all.current": 7})
    assert CUDAAccelerator().get_device_stats("cuda:1") == {"allocated_bytes.all.current": 7}
    assert seen == ["cuda:1"]
    assert set(CPUAccelerator().get_device_stats("cpu")) == {CPU_PERCENT, CPU_SWAP_PERCENT, CPU_VM_PERCENT}
