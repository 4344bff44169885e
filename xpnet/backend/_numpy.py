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
