"""Out-of-memory detection and CUDA cache clean-up (Lightning's ``utilities.memory``).

The batch-size scaler treats these errors as "too large" and shrinks the batch; any other
error is the user's and propagates.
"""

from __future__ import annotations

import gc

import torch

__all__ = ["is_oom_error", "is_cuda_out_of_memory", "is_cudnn_snafu", "is_out_of_cpu_memory", "garbage_collection_cuda"]


def is_oom_error(exception: BaseException) -> bool:
    """Whether ``exception`` means the batch did not fit in memory (CUDA, cuDNN or CPU)."""
    return is_cuda_out_of_memory(exception) or is_cudnn_snafu(exception) or is_out_of_cpu_memory(exception)


def is_cuda_out_of_memory(exception: BaseException) -> bool:
    """``torch.cuda.OutOfMemoryError`` and the older plain ``RuntimeError("CUDA out of memory ...")``."""
    if isinstance(exception, torch.cuda.OutOfMemoryError):
        return True
    return (
        isinstance(exception, RuntimeError)
        and len(exception.args) == 1
        and isinstance(exception.args[0], str)
        and "CUDA" in exception.args[0]
        and "out of memory" in exception.args[0]
    )


def is_cudnn_snafu(exception: BaseException) -> bool:
    """cuDNN's way of running out of memory (pytorch/pytorch#4107)."""
    return (
        isinstance(exception, RuntimeError)
        and len(exception.args) == 1
        and isinstance(exception.args[0], str)
        and "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED." in exception.args[0]
    )


def is_out_of_cpu_memory(exception: BaseException) -> bool:
    """The CPU allocator's "DefaultCPUAllocator: can't allocate memory"."""
    return (
        isinstance(exception, RuntimeError)
        and len(exception.args) == 1
        and isinstance(exception.args[0], str)
        and "DefaultCPUAllocator: can't allocate memory" in exception.args[0]
    )


def garbage_collection_cuda() -> None:
    """Free Python garbage and, where CUDA is in use, its cached blocks (an OOM here is ignored)."""
    gc.collect()
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    try:
        torch.cuda.empty_cache()
    except RuntimeError as exception:
        if not is_oom_error(exception):
            raise
