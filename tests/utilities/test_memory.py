"""Which errors the batch-size scaler treats as out of memory."""

from __future__ import annotations

import torch

from fulmen.utilities.memory import garbage_collection_cuda, is_oom_error


def test_oom_errors_are_recognised_and_others_are_not() -> None:
    assert is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_oom_error(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_oom_error(RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if ..."))
    assert is_oom_error(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_oom_error(ValueError("CUDA out of memory"))  # only RuntimeErrors, as in Lightning
    assert not is_oom_error(RuntimeError("CUDA out of memory", "two args"))


def test_garbage_collection_runs_without_cuda() -> None:
    garbage_collection_cuda()  # no CUDA initialised here: only gc.collect(), no error
