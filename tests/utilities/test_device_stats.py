"""CPU and CUDA statistics with Lightning's names."""

from __future__ import annotations

import sys

import pytest
import torch

from fulmen.utilities.device_stats import CPU_PERCENT, CPU_SWAP_PERCENT, CPU_VM_PERCENT, get_cpu_stats


def test_cpu_figures_are_psutils_percentages() -> None:
    import psutil

    stats = get_cpu_stats()
    assert sorted(stats) == sorted([CPU_PERCENT, CPU_SWAP_PERCENT, CPU_VM_PERCENT])
    assert all(0.0 <= value <= 100.0 for value in stats.values()), stats
    assert abs(stats[CPU_VM_PERCENT] - psutil.virtual_memory().percent) < 5.0


def test_without_psutil_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # what a failed import of it looks like
    with pytest.raises(ModuleNotFoundError, match=r"needs `psutil`.*\nHINT: pip install psutil"):
        get_cpu_stats()


def test_accelerators_report_their_devices_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    from fulmen.runtime.trainer_accelerator import CPUAccelerator, CUDAAccelerator

    seen = []
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda device: seen.append(device) or {"allocated_bytes.all.current": 7})
    assert CUDAAccelerator().get_device_stats("cuda:1") == {"allocated_bytes.all.current": 7}
    assert seen == ["cuda:1"]
    assert set(CPUAccelerator().get_device_stats("cpu")) == {CPU_PERCENT, CPU_SWAP_PERCENT, CPU_VM_PERCENT}
