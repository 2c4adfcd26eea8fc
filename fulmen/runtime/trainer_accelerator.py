"""``trainer.accelerator``: what kind of device a rank computes on (Lightning's Accelerator names).

Callbacks written for Lightning test ``isinstance(trainer.accelerator, CUDAAccelerator)``;
these small classes make that work. Device placement itself is the Strategy's job.
"""

from __future__ import annotations

from typing import Any

import torch


class Accelerator:
    """Base of the accelerator kinds; ``device_type`` is torch's name for it."""

    device_type = "cpu"

    @staticmethod
    def is_available() -> bool:
        return True

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """Numbers ``DeviceStatsMonitor`` logs for ``device`` (the CPU's: use, RAM, swap)."""
        from fulmen.utilities.device_stats import get_cpu_stats

        return get_cpu_stats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CPUAccelerator(Accelerator):
    device_type = "cpu"


class CUDAAccelerator(Accelerator):
    device_type = "cuda"

    @staticmethod
    def is_available() -> bool:
        return torch.cuda.is_available()

    def get_device_stats(self, device: torch.device | str | int) -> dict[str, Any]:
        """``torch.cuda.memory_stats(device)``, as Lightning's CUDAAccelerator."""
        from fulmen.utilities.device_stats import get_cuda_stats

        return get_cuda_stats(device)


class MPSAccelerator(Accelerator):
    device_type = "mps"

    @staticmethod
    def is_available() -> bool:
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def accelerator_for(device: torch.device) -> Accelerator:
    """The Accelerator for a strategy's root device."""
    kinds = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}
    return kinds.get(device.type, CPUAccelerator)()
