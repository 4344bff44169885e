"""What a chosen device does besides computing: waiting for its queue, its memory pool, running out of
memory, summing over ranks through NCCL; and which backends can be used here at all."""

from __future__ import annotations

import re
import socket

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


def nccl_allreduce(dev, comm):
    """How the ranks of ``comm`` sum a flat array on ``dev``: ``(sum, why)``.

    ``sum`` sums in place through NCCL (CuPy on CUDA, each rank on a GPU of its own), or is ``None``: the
    caller then stages through host memory and MPI. ``why`` says why not NCCL where the library has it
    (ranks that share a GPU), else ``None``. Every rank calls it (one allgather of the ranks' GPUs) and
    all get the same answer, so none waits in NCCL for a rank that went through MPI.
    """
    lib = LIBRARIES[dev.backend]
    gpu = lib.nccl_gpu(dev) if dev.kind == "cuda" else None
    gpus = comm.gather(None if gpu is None else (socket.gethostname(), gpu))
    if any(g is None for g in gpus):
        return None, None
    why = shared_gpus(gpus)
    if why is not None:
        return None, why
    return lib.nccl_allreduce(dev, comm.rank, comm.size, comm.bcast), None


def shared_gpus(gpus: list) -> str | None:
    """Why NCCL cannot sum over these GPUs (``gpus[r]``: rank r's ``(host, PCI bus id)``), or ``None`` when
    each rank has its own: NCCL stops with "Duplicate GPU detected" when two ranks share one."""
    ranks: dict = {}
    for rank, gpu in enumerate(gpus):
        ranks.setdefault(tuple(gpu), []).append(rank)
    shared = next((r for r in ranks.values() if len(r) > 1), None)
    if shared is None:
        return None
    host, bus = gpus[shared[0]]
    return (f"ranks {', '.join(map(str, shared))} share the GPU {bus} of {host}, and NCCL needs a GPU per rank. "
            f"Fix: start at most as many ranks on a machine as it has GPUs to sum through NCCL")


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
