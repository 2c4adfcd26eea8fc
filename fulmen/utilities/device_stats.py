"""Device statistics with Lightning's names: the CPU's (``get_cpu_stats``, from psutil) and CUDA's
allocator counters (``get_cuda_stats``)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["CPU_PERCENT", "CPU_SWAP_PERCENT", "CPU_VM_PERCENT", "get_cpu_stats", "get_cuda_stats"]

CPU_VM_PERCENT = "cpu_vm_percent"
CPU_PERCENT = "cpu_percent"
CPU_SWAP_PERCENT = "cpu_swap_percent"


def get_cpu_stats() -> dict[str, float]:
    """System-wide RAM in use (%), CPU use since the previous call (%), swap in use (%).

    psutil's figures (a fulmen dependency); its first ``cpu_percent`` of a process is 0.0.
    """
    try:
        import psutil
    except ImportError as error:  # only in an environment that dropped a declared dependency
        raise ModuleNotFoundError(
            f"Fetching CPU device stats needs `psutil`, which cannot be imported: {error}\n"
            "HINT: pip install psutil (fulmen depends on it), or DeviceStatsMonitor(cpu_stats=False) on a GPU run."
        ) from error
    return {
        CPU_VM_PERCENT: psutil.virtual_memory().percent,
        CPU_PERCENT: psutil.cpu_percent(),
        CPU_SWAP_PERCENT: psutil.swap_memory().percent,
    }


def get_cuda_stats(device: torch.device | int | str) -> dict[str, Any]:
    """``torch.cuda.memory_stats(device)``: the caching allocator's counters (Lightning's CUDA stats)."""
    return torch.cuda.memory_stats(device)
