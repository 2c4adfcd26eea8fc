"""Device statistics with Lightning's names: the CPU's (``get_cpu_stats``) and CUDA's allocator counters.

Lightning reads the CPU numbers from ``psutil`` and raises when it is missing. fulmen uses
``psutil`` when it is installed and otherwise reads the same numbers from Linux's ``/proc``
(psutil's own source on Linux), so ``DeviceStatsMonitor`` works without an extra package
there; elsewhere a missing ``psutil`` is an error that names it.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import torch

__all__ = ["CPU_PERCENT", "CPU_SWAP_PERCENT", "CPU_VM_PERCENT", "get_cpu_stats", "get_cuda_stats"]

CPU_VM_PERCENT = "cpu_vm_percent"
CPU_PERCENT = "cpu_percent"
CPU_SWAP_PERCENT = "cpu_swap_percent"

_PROC = Path("/proc")
_lock = threading.Lock()
_last_cpu_times: tuple[int, int] | None = None  # (busy, total) jiffies at the previous call


def get_cpu_stats() -> dict[str, float]:
    """System-wide CPU use since the previous call (%), RAM in use (%), swap in use (%).

    The first call's CPU figure covers the time since boot (psutil returns 0.0 there).
    """
    if importlib.util.find_spec("psutil") is not None:
        import psutil

        return {
            CPU_VM_PERCENT: psutil.virtual_memory().percent,
            CPU_PERCENT: psutil.cpu_percent(),
            CPU_SWAP_PERCENT: psutil.swap_memory().percent,
        }
    if not (_PROC / "stat").is_file() or not (_PROC / "meminfo").is_file():
        raise ModuleNotFoundError(
            "Fetching CPU device stats needs `psutil` on this system (no Linux /proc to read them from).\n"
            "HINT: pip install psutil, or DeviceStatsMonitor(cpu_stats=False) to log only the accelerator's stats."
        )
    memory = _meminfo((_PROC / "meminfo").read_text())
    return {
        CPU_VM_PERCENT: _percent(memory["MemTotal"] - memory.get("MemAvailable", memory["MemFree"]), memory["MemTotal"]),
        CPU_PERCENT: _cpu_percent((_PROC / "stat").read_text()),
        CPU_SWAP_PERCENT: _percent(memory["SwapTotal"] - memory["SwapFree"], memory["SwapTotal"]),
    }


def get_cuda_stats(device: torch.device | int | str) -> dict[str, Any]:
    """``torch.cuda.memory_stats(device)``: the caching allocator's counters (Lightning's CUDA stats)."""
    return torch.cuda.memory_stats(device)


def _meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as ``{field: kB}``."""
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    return fields


def _percent(used: int, total: int) -> float:
    return round(100.0 * used / total, 1) if total > 0 else 0.0


def _cpu_percent(stat: str) -> float:
    """Busy share of all CPUs' time since the previous call, from the first line of ``/proc/stat``."""
    global _last_cpu_times
    values = [int(v) for v in stat.splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is inside user/nice
    total = sum(values[:8])
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    busy = total - idle
    with _lock:
        previous, _last_cpu_times = _last_cpu_times, (busy, total)
    if previous is None:
        return _percent(busy, total)
    busy_delta, total_delta = busy - previous[0], total - previous[1]
    return _percent(max(busy_delta, 0), total_delta) if total_delta > 0 else 0.0
