"""NumPy: the CPU backend every install has; arrays are plain ``numpy.ndarray``."""

from __future__ import annotations

import array_api_compat

NAME = "numpy"
KINDS = ("cpu",)


def missing() -> str | None:
    return None  # a dependency of xpnet


def cuda_status() -> tuple[int, str]:
    return 0, "NumPy runs on the CPU only"


def namespace():
    import array_api_compat.numpy as xp

    return xp


def native(kind: str, index: int, xp):
    return "cpu"


def owns(xp) -> bool:
    return array_api_compat.is_numpy_namespace(xp)


def locate(x, native) -> tuple[str, int, str]:
    return "cpu", 0, ""


def asarray(xp, host, native):
    return host  # compat's numpy namespace works on plain ndarrays: no copy


def status() -> str:
    return "ok"


def random_uniform(xp, native, seed, shape, dtype):
    import numpy as np

    return np.random.default_rng(seed).random(shape, dtype=dtype)


# -- fast paths (backend.fast_path): each returns None for a case it does not take ---------------------------
def matmul_tn(a, b):
    """``a.T @ b`` for one row each (``a``: (1, m), ``b``: (1, n)): the outer product, through BLAS.

    NumPy's matmul does not send an inner dimension of 1 to BLAS (~220 us for 784x200 float32), and the
    broadcast ``a.T * b`` runs ~75 us; ``numpy.dot`` calls BLAS gemm (~40 us), with the same products
    (one per entry, nothing summed). ``None`` for more rows, where matmul already uses BLAS.
    """
    if a.shape[0] != 1:
        return None
    import numpy

    return numpy.dot(a.T, b)
