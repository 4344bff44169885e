"""NumPy: the CPU backend every install has; arrays are plain ``numpy.ndarray``."""

from __future__ import annotations

import array_api_compat
import numpy as np

from . import _numpy_layers, _numpy_windows
from .protocol import Backend


class NumPy(Backend):
    NAME = "numpy"
    KINDS = ("cpu",)

    def missing(self) -> str | None:
        return None  # a dependency of xpnet

    def cuda_status(self) -> tuple[int, str]:
        return 0, "NumPy runs on the CPU only"

    def namespace(self):
        import array_api_compat.numpy as xp

        return xp

    def native(self, kind: str, index: int, xp):
        return "cpu"

    def owns(self, xp) -> bool:
        return array_api_compat.is_numpy_namespace(xp)

    def locate(self, x, native) -> tuple[str, int, str]:
        return "cpu", 0, ""

    def asarray(self, xp, host, native):
        return host  # compat's numpy namespace works on plain ndarrays: no copy

    def status(self) -> str:
        return "ok"

    # -- the layers' routines (backend.routine), tested against the generic lines --------------------------
    def matmul_tn(self, a, b):
        """``a.T @ b`` for one row each (``a``: (1, m), ``b``: (1, n)): the outer product, through BLAS.

        NumPy's matmul does not send an inner dimension of 1 to BLAS (~220 us for 784x200 float32), and the
        broadcast ``a.T * b`` runs ~75 us; ``numpy.dot`` calls BLAS gemm (~40 us), with the same products
        (one per entry, nothing summed). More rows: :meth:`matmul`'s.
        """
        if a.shape[0] != 1:
            return _numpy_layers.matmul(a.T, b)
        return np.dot(a.T, b)

    def matmul(self, a, b):
        return _numpy_layers.matmul(a, b)

    # -- the layers' heavy passes, on all cores: backend/_numpy_windows.py and backend/_numpy_layers.py ----
    def random_uniform(self, xp, native, seed, shape: tuple, dtype: str):
        """The default's numbers (``default_rng(seed).random``), drawn in runs on all cores."""
        drawn = _numpy_layers.random_uniform(seed, shape, dtype)
        return drawn if drawn is not None else super().random_uniform(xp, native, seed, shape, dtype)

    def im2col_chunk(self, x, sample_elements):
        return _numpy_windows.im2col_chunk(x, sample_elements)

    def im2col(self, x, kernel, stride, out):
        return _numpy_windows.im2col(x, kernel, stride, out)

    def col2im(self, cols, kernel, stride, size):
        return _numpy_windows.col2im(cols, kernel, stride, size)

    def conv2d_forward(self, xpad, W, b, stride, out, step):
        return _numpy_windows.conv2d_forward(xpad, W, b, stride, out, step)

    def conv2d_backward(self, dy, xpad, cols, W, stride, out, step, bias, input_grad):
        return _numpy_windows.conv2d_backward(dy, xpad, cols, W, stride, out, step, bias, input_grad)

    def max_pool2d(self, x, kernel, stride, out):
        return _numpy_windows.max_pool2d(x, kernel, stride, out)

    def max_pool2d_backward(self, dy, state, kernel, stride, shape):
        return _numpy_windows.max_pool2d_backward(dy, state, kernel, stride, shape)

    def relu(self, x):
        return _numpy_layers.relu(x)

    def relu_backward(self, dy, y):
        return _numpy_layers.relu_backward(dy, y)

    def dropout(self, x, u, p):
        return _numpy_layers.dropout(x, u, p)

    def dropout_backward(self, dy, mask):
        return _numpy_layers.dropout_backward(dy, mask)


BACKEND = NumPy()
