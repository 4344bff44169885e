"""CuPy: CUDA GPUs. The probe, the memory pool and (later) fused kernels and NCCL live here.

array-api-compat's CuPy creation functions ignore ``device=`` (compat #337): the current CUDA device
decides where CuPy allocates (and CuPy refuses to compute on arrays of another device), so everything
runs under :func:`context` (``Device.context()``), never under a global ``Device.use()``.
"""

from __future__ import annotations

import array_api_compat

NAME = "cupy"
KINDS = ("cuda",)


def missing() -> str | None:
    return None  # its absence is reported by cuda_status(), with the fix for the user's CUDA


def cuda_status() -> tuple[int, str]:
    """Return (number of CUDA devices CuPy can use, why none when it is 0)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CuPy/CUDA install raising on import
        return 0, f"CuPy is not installed ({type(exc).__name__}: {exc})"
    if cupy.cuda.is_available():
        return cupy.cuda.runtime.getDeviceCount(), ""
    # is_available() swallows the driver's error; ask again to be able to show it.
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return 0, f"CuPy is installed but CUDA cannot be used: {exc}"
    return 0, f"CuPy is installed but sees {count} CUDA devices"


def device_names(count: int) -> list[str]:
    import cupy

    names = [cupy.cuda.runtime.getDeviceProperties(i)["name"] for i in range(count)]
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def namespace():
    import array_api_compat.cupy as xp

    return xp


def native(kind: str, index: int, xp):
    import cupy

    return cupy.cuda.Device(index)


def context(dev):
    import cupy

    # A fresh Device object per `with`: each keeps its own stack of the devices to restore, so nested
    # and concurrent contexts (two threads, two models) never pop each other's.
    return cupy.cuda.Device(dev.index)


def owns(xp) -> bool:
    return array_api_compat.is_cupy_namespace(xp)


def locate(x, native) -> tuple[str, int, str]:
    return "cuda", getattr(native, "id", 0), ""


def asarray(xp, host, native):
    with cupy_device(native.id):
        return xp.asarray(host)


def cupy_device(index: int):
    import cupy

    return cupy.cuda.Device(index)  # fresh, as in context()


def is_array(x) -> bool:
    return array_api_compat.is_cupy_array(x)


def to_numpy(x):
    return x.get()


def synchronize(dev) -> None:
    dev.native.synchronize()


def memory_pool_bytes(dev) -> int:
    import cupy

    return cupy.get_default_memory_pool().total_bytes()


def free_memory_pool(dev) -> None:
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()


def status() -> str:
    count, why = cuda_status()
    return f"ok ({count} CUDA device(s))" if count else why


def random_uniform(xp, native, seed, shape, dtype):
    import cupy
    import numpy as np

    # As the numpy backend, with CuPy's generator on the GPU (allocations follow the current device).
    with cupy_device(native.id):
        return cupy.random.default_rng(int(seed.generate_state(1, np.uint64)[0])).random(shape, dtype=dtype)
