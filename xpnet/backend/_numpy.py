"""NumPy: the CPU backend every install has; arrays are plain ``numpy.ndarray``."""

from __future__ import annotations

import array_api_compat
import numpy as np

from . import _numpy_sequence
from .protocol import Backend, cache_sized_chunk


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
        (one per entry, nothing summed). ``None`` for more rows, where matmul already uses BLAS.
        """
        if a.shape[0] != 1:
            return None
        return np.dot(a.T, b)

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

    # -- the transformer's LayerNorm, GELU and attention softmax, in fewer passes: _numpy_sequence.py ------
    layer_norm = staticmethod(_numpy_sequence.layer_norm)
    layer_norm_backward = staticmethod(_numpy_sequence.layer_norm_backward)
    gelu = staticmethod(_numpy_sequence.gelu)
    gelu_backward = staticmethod(_numpy_sequence.gelu_backward)
    attention_softmax = staticmethod(_numpy_sequence.attention_softmax)
    attention_softmax_backward = staticmethod(_numpy_sequence.attention_softmax_backward)

    # -- the convolution layers' windows (xpnet.layers.windows), through NumPy's strides -------------------
    # The generic lines stack kh*kw sliced views and undo them by adding zero-framed pieces (no scatter, no
    # writes: JAX runs them too). On NumPy a strided view and slice-adds into one zeroed buffer do the same
    # with fewer passes over memory (Chainer's col2im): at batch 64 of the MNIST preset's second convolution,
    # col2im takes 12 ms instead of 22 ms.

    def im2col_chunk(self, x, sample_elements):
        """Chunks of ``Conv2D``'s columns that stay in the CPU's cache (:func:`.protocol.cache_sized_chunk`)."""
        return cache_sized_chunk(sample_elements, x.shape[0])

    def im2col(self, x, kernel, stride, out):
        """``(N, C, kh*kw, OH, OW)``, C-contiguous: ``cols[n, c, i*kw + j, p, q] = x[n, c, i + sh*p, j + sw*q]``."""
        (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
        n, c = x.shape[:2]
        # (N, C, H-kh+1, W-kw+1, kh, kw) as a view; the stride picks the rows and columns windows start at
        view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, :sh * (oh - 1) + 1:sh,
                                                                                   :sw * (ow - 1) + 1:sw]
        cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
        cols[...] = view.transpose(0, 1, 4, 5, 2, 3)  # one copy, straight into the layout the product wants
        return cols.reshape(n, c, kh * kw, oh, ow)

    def col2im(self, cols, kernel, stride, size):
        """The transpose of :meth:`im2col`, as the generic ``col2im`` takes it: ``cols`` (N, kh*kw, C, OH, OW)
        holds ``kh*kw`` pieces in row-major kernel order; the result (N, C, H, W) holds at each pixel the sum
        of the pieces' entries taken from it."""
        (kh, kw), (sh, sw), (h, w) = kernel, stride, size
        n, _, c, oh, ow = cols.shape
        pieces = [cols[:, k] for k in range(kh * kw)]
        if (sh, sw) == (kh, kw):
            # Windows that tile the image (pooling's default) never share a pixel: each piece is written, not
            # added, and only rows and columns no window reached need zeros.
            img = np.empty((n, c, h, w), dtype=cols.dtype)
            img[:, :, oh * kh:, :] = 0
            img[:, :, :oh * kh, ow * kw:] = 0
            for k, piece in enumerate(pieces):
                img[:, :, k // kw:oh * kh:kh, k % kw:ow * kw:kw] = piece
            return img
        img = np.zeros((n, c, h, w), dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                img[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += pieces[i * kw + j]
        return img


BACKEND = NumPy()
