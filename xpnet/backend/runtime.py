"""What a chosen device does besides computing: waiting for its queue, its memory pool, running out of
memory, summing over ranks through NCCL; and which backends can be used here at all."""

from __future__ import annotations

import re

from .registry import LIBRARIES

# What the CUDA runtime says (cudaErrorMemoryAllocation: "out of memory"), and what its libraries say when
# they cannot allocate a workspace or handle: cuBLAS, cuSOLVER, cuSPARSE, cuDNN, cuTENSOR "*_STATUS_ALLOC_FAILED",
# cuFFT "CUFFT_ALLOC_FAILED", cuRAND "CURAND_STATUS_ALLOCATION_FAILED" (CuPy's exceptions carry the name alone,
# PyTorch's a "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling ...").
_OUT_OF_MEMORY = re.compile(r"out.of.memory|_ALLOC(ATION)?_FAILED", re.IGNORECASE)


class DeviceOutOfMemoryError(MemoryError):
    """The device ran out of memory; the message says what overflowed (the data upload, a training batch,
    an inference batch even at size 1) and what to do."""


def synchronize(dev) -> None:
    """Block until ``dev`` has finished its queued work (for honest timings; a no-op for NumPy)."""
    dev.synchronize()


def nccl_allreduce(dev, rank: int, size: int, share):
    """An in-place sum over ranks of a flat array on ``dev`` through NCCL (CuPy on CUDA), or ``None``
    where the backend has no NCCL path (see :meth:`~.protocol.Backend.nccl_allreduce`)."""
    return None if dev.kind != "cuda" else LIBRARIES[dev.backend].nccl_allreduce(dev, rank, size, share)


def available_backends() -> dict[str, str]:
    """Map each backend to ``"ok"`` or the reason it cannot be used here (for ``xpnet info``)."""
    return {name: lib.status() for name, lib in LIBRARIES.items()}


def memory_pool_bytes(dev) -> int | None:
    """Bytes the GPU memory pool of ``dev`` holds now, in arrays or cached (``None`` on the CPU).

    Not a peak: :func:`free_memory_pool` lowers it, and so does the library when an allocation fails (it
    empties its cache and tries again). Otherwise the pools of CuPy and PyTorch keep what they took, so
    after a run this is also the most the pool held since it was last emptied."""
    if dev.kind != "cuda":
        return None
    with dev.context():  # the pools are per device, and CuPy's calls act on the current one
        return LIBRARIES[dev.backend].memory_pool_bytes(dev)


def free_memory_pool(dev) -> None:
    """Give cached GPU memory back to the driver (after an out-of-memory error, say)."""
    if dev.kind == "cuda":
        with dev.context():
            LIBRARIES[dev.backend].free_memory_pool(dev)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error of any backend (not one xpnet has already explained)."""
    if isinstance(exc, DeviceOutOfMemoryError):
        return False
    return type(exc).__name__ in ("OutOfMemoryError", "MemoryError") or bool(_OUT_OF_MEMORY.search(str(exc)))
