"""``trainer.accelerator``: what kind of device a rank computes on (Lightning's Accelerator names).

Callbacks written for Lightning test ``isinstance(trainer.accelerator, CUDAAccelerator)``;
these small classes make that work. Device placement itself is the Strategy's job.
"""

from __future__ import annotations

import torch


class Accelerator:
    """Base of the accelerator kinds; ``device_type`` is torch's name for it."""

    device_type = "cpu"

    @staticmethod
    def is_available() -> bool:
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CPUAccelerator(Accelerator):
    device_type = "cpu"


class CUDAAccelerator(Accelerator):
    device_type = "cuda"

    @staticmethod
    def is_available() -> bool:
        return torch.cuda.is_available()


class MPSAccelerator(Accelerator):
    device_type = "mps"

    @staticmethod
    def is_available() -> bool:
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def accelerator_for(device: torch.device) -> Accelerator:
    """The Accelerator for a strategy's root device."""
    kinds = {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}
    return kinds.get(device.type, CPUAccelerator)()
