"""NumPy: the CPU backend every install has; arrays are plain ``numpy.ndarray``."""

from __future__ import annotations

import functools

import array_api_compat
import numpy as np

# (by their full names: `from . import` would import the package, whose __init__ is what imports this module)
import xpnet.backend._numpy_layers as _numpy_layers
import xpnet.backend._numpy_sequence as _numpy_sequence
import xpnet.backend._numpy_windows as _numpy_windows
from .protocol import Backend


@functools.cache
def _blas_ger(dtype_char: str):
    """SciPy's BLAS rank-1 update for float32 (``f``) or float64 (``d``), or ``None`` without SciPy (optional:
    ``pip install "xpnet[blas]"``; ``xpnet info`` says whether it is there)."""
    try:
        from scipy.linalg import blas
    except ImportError:
        return None
    return {"f": blas.sger, "d": blas.dger}[dtype_char]


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

    def sgd_dense(self, W, b, x, dy, lr):
        """Dense's SGD step in backward for one row (``x``: (1, in), ``dy``: (1, out)): ``W -= lr x^T dy`` as
        one rank-1 update of ``W``, ``b -= lr dy`` with no reduction call (a one-row sum is the row).

        With SciPy, BLAS's ``?ger`` on ``W``'s memory: one read and write of ``W`` (784x200 float32, one
        thread: 17 us, against 57 us for the generic lines' ``dW``, ``lr dW`` and the add). Without it, the
        outer product of the scaled row ``x^T (-lr dy)`` added to ``W`` (44 us). Either rounds as
        ``(lr x_i) dy_j`` rather than ``lr (x_i dy_j)``: within float32 rounding of the generic lines (``b``'s
        bits are theirs). More rows: ``None``, the generic lines (BLAS's ``gemm`` into ``W`` measured no faster
        at 128 and 256 rows).
        """
        if x.shape[0] != 1 or W.dtype not in (np.float32, np.float64) or not W.flags.c_contiguous:
            return None
        ger = _blas_ger(W.dtype.char)
        if ger is None:
            W += np.dot(x.T, dy * -lr)
        else:  # W.T is Fortran-ordered, so ?ger updates it where it lies (overwrite_a)
            out = ger(-lr, dy[0], x[0], a=W.T, overwrite_a=True)
            if not np.may_share_memory(out, W):  # (f2py made a copy after all; bounds only: cheap)
                W[...] = out.T
        if b is not None:
            b += dy[0] * -lr
        return W

    def scatter_add(self, ids, values, rows):
        """Embedding's gradient: ``out[r] = sum of values[i] where ids[i] == r``, ``out`` (rows, dim).

        Sorted ids and ``np.add.reduceat`` over each run of equal ids: one pass over the values, then one
        write per distinct id. Measured against the one-hot product (the generic lines, through BLAS) and
        ``np.add.at`` (float32, one thread, 768 ids): 0.13 ms against 0.15 and 1.3 ms for 65 rows of 128;
        2.0 ms against 126 and 1.6 ms for 50257 rows of 128 (np.bincount per column: 0.36 and 58 ms).
        """
        out = np.zeros((rows, values.shape[1]), dtype=values.dtype)
        if ids.shape[0] == 0:
            return out
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        out[ids[starts]] = np.add.reduceat(values[order], starts, axis=0)
        return out

    def step_at_once(self, flat):
        """``False``: optimizers step a model's parameters array by array, not its flat buffer at once.

        In host memory a step's temporaries the size of the whole model (the concatenated gradient, Adam's
        stacked moments) come back from the allocator as fresh pages, faulted in at every step: AdamW on a
        784-256-10 MLP took 5.6 ms a step over the flat buffer against 0.8 ms array by array (2-core CPU;
        with glibc's trim threshold raised the two were equal). What the flat step saves, launches, costs
        NumPy ~1 us each. The parameters stay views of the flat buffer all the same.
        """
        return False

    # -- the layers' heavy passes, on all cores: backend/_numpy_windows.py and backend/_numpy_layers.py ----
    def random_uniform(self, xp, native, seed, shape: tuple, dtype: str):
        """The default's numbers (``default_rng(seed).random``), drawn in runs on all cores."""
        drawn = _numpy_layers.random_uniform(seed, shape, dtype)
        return drawn if drawn is not None else super().random_uniform(xp, native, seed, shape, dtype)

    # -- the transformer's LayerNorm, GELU and attention softmax, in fewer passes: _numpy_sequence.py ------
    layer_norm = staticmethod(_numpy_sequence.layer_norm)
    layer_norm_backward = staticmethod(_numpy_sequence.layer_norm_backward)
    gelu = staticmethod(_numpy_sequence.gelu)
    gelu_backward = staticmethod(_numpy_sequence.gelu_backward)
    attention_softmax = staticmethod(_numpy_sequence.attention_softmax)
    attention_softmax_backward = staticmethod(_numpy_sequence.attention_softmax_backward)

    # (plain functions, not methods: a batch-1 step calls some of them several times)
    matmul = staticmethod(_numpy_layers.matmul)
    im2col_chunk = staticmethod(_numpy_windows.im2col_chunk)
    im2col = staticmethod(_numpy_windows.im2col)
    col2im = staticmethod(_numpy_windows.col2im)
    conv2d_forward = staticmethod(_numpy_windows.conv2d_forward)
    conv2d_backward = staticmethod(_numpy_windows.conv2d_backward)
    max_pool2d = staticmethod(_numpy_windows.max_pool2d)
    max_pool2d_backward = staticmethod(_numpy_windows.max_pool2d_backward)
    relu = staticmethod(_numpy_layers.relu)
    relu_backward = staticmethod(_numpy_layers.relu_backward)
    dropout = staticmethod(_numpy_layers.dropout)
    dropout_backward = staticmethod(_numpy_layers.dropout_backward)
    softmax_cross_entropy = staticmethod(_numpy_layers.softmax_cross_entropy)
    softmax_cross_entropy_backward = staticmethod(_numpy_layers.softmax_cross_entropy_backward)


BACKEND = NumPy()
