"""The NumPy backend's convolution and pooling (:data:`xpnet.backend.ROUTINES`): windows through NumPy's
strides, chunks of samples on all cores (:mod:`._pool`).

The generic lines (:mod:`xpnet.layers.windows`, :mod:`xpnet.layers.conv`, :mod:`xpnet.layers.pooling`)
stack kh*kw sliced views, undo them by adding zero-framed pieces and concatenate the chunks' results (no
scatter, no writes: JAX runs them too). Here a strided view is copied once into the columns, col2im is
kh*kw slice-adds into one buffer (Chainer's), and each chunk of samples writes its part of an output
made once: its columns built, multiplied and undone while they are in the cache, on one of the pool's
threads. The products are the generic lines' (one BLAS call per sample); the weight and bias gradients
are summed per chunk, then over the chunks in chunk order. So a run repeats itself bit for bit, and the
output and input gradient are the generic lines' bit for bit; the parameter gradients are theirs to
rounding, since on several threads a batch is cut into other chunks (an even share for each thread).
"""

from __future__ import annotations

import math

import numpy as np

from ._numpy_layers import floats
from ._pool import chunks, parallel_for, threads
from .protocol import cache_sized_chunk


def _bounds(batch: int, step: int) -> list[tuple[int, int]]:
    """Chunks of at most ``step`` samples, of near-equal sizes and, on several threads, as many as a multiple
    of the threads: every thread gets the same work (dynamic scheduling then only evens out what the OS
    takes away). On one thread, ``step`` samples each (the last fewer), as the generic lines cut them."""
    n = threads()
    if n == 1:
        return [(s, min(s + step, batch)) for s in range(0, batch, step)]
    count = n * math.ceil(math.ceil(batch / step) / n)
    return chunks(batch, count)


def im2col_chunk(x, sample_elements: int) -> int:
    """Samples per chunk: as many as keep the columns in each thread's share of the cache
    (:func:`.protocol.cache_sized_chunk`: 4 MiB of float32 on one thread, 2 MiB each on two, ...)."""
    return cache_sized_chunk(sample_elements * threads(), x.shape[0])


def im2col(x, kernel, stride, out):
    """``(N, C, kh*kw, OH, OW)``, C-contiguous: ``cols[n, c, i*kw + j, p, q] = x[n, c, i + sh*p, j + sw*q]``."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    n, c = x.shape[:2]
    # The windows as one strided view, (N, C, kh, kw, OH, OW): the last window ends at row kh-1 + sh*(OH-1)
    # <= H-1 (output_size's floor rule). as_strided, not sliding_window_view: 5 us of Python instead of 30,
    # which the pool's threads would take turns at (the GIL).
    s0, s1, s2, s3 = x.strides
    view = np.lib.stride_tricks.as_strided(x, (n, c, kh, kw, oh, ow), (s0, s1, s2, s3, sh * s2, sw * s3),
                                           writeable=False)
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    cols[...] = view  # one copy, straight into the layout the product wants
    return cols.reshape(n, c, kh * kw, oh, ow)


def col2im(cols, kernel, stride, size, img=None):
    """The transpose of :func:`im2col`, as the generic ``col2im`` takes it: ``cols`` (N, kh*kw, C, OH, OW)
    holds ``kh*kw`` pieces in row-major kernel order; the result (N, C, H, W) holds at each pixel the sum
    of the pieces' entries taken from it. Written into ``img`` where given (any former content is lost)."""
    (kh, kw), (sh, sw), (h, w) = kernel, stride, size
    n, _, c, oh, ow = cols.shape
    if img is None:
        img = np.empty((n, c, h, w), dtype=cols.dtype)
    pieces = [cols[:, k] for k in range(kh * kw)]
    if (sh, sw) == (kh, kw):
        # Windows that tile the image (pooling's default) never share a pixel: each piece is written, not
        # added, and only rows and columns no window reached need zeros.
        img[:, :, oh * kh:, :] = 0
        img[:, :, :oh * kh, ow * kw:] = 0
        for k, piece in enumerate(pieces):
            img[:, :, k // kw:oh * kh:kh, k % kw:ow * kw:kw] = piece
        return img
    img[...] = 0
    for i in range(kh):
        for j in range(kw):
            img[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += pieces[i * kw + j]
    return img


# -- Conv2D -----------------------------------------------------------------------------------------------
def conv2d_forward(xpad, W, b, stride, out, step):
    """:func:`xpnet.layers.conv.conv2d_forward`: each chunk's columns times ``W`` as a matrix, plus the bias
    while the chunk's output is in the cache, written into one output. No columns are kept (``None``):
    the backward pass builds them again, chunk by chunk. A batch that is one chunk on one thread (or one
    sample) is the generic lines' case: they keep its columns."""
    n, o = xpad.shape[0], W.shape[0]
    if n == 1 or (step >= n and threads() == 1) or not floats(xpad, W, b):
        return None
    kernel, positions = W.shape[2:], out[0] * out[1]
    W2 = W.reshape(o, -1)
    bias = None if b is None else b.reshape(o, 1)
    y = np.empty((n, o, positions), dtype=W.dtype)
    bounds = _bounds(n, step)

    def one(i):
        s, e = bounds[i]
        cols = im2col(xpad[s:e], kernel, stride, out).reshape(e - s, -1, positions)
        np.matmul(W2, cols, out=y[s:e])
        if bias is not None:
            y[s:e] += bias

    parallel_for(one, len(bounds))
    return y.reshape(n, o, *out), None


def conv2d_backward(dy, xpad, cols, W, stride, out, step, bias: bool, input_grad: bool):
    """:func:`xpnet.layers.conv.conv2d_backward`: per chunk, ``dW``'s part (summed in chunk order after),
    ``db``'s part and the input's gradient, undone by col2im straight into its rows of one output."""
    if not floats(dy, xpad, W):
        return None
    n, o = dy.shape[:2]
    kernel, cin, positions = W.shape[2:], W.shape[1], out[0] * out[1]
    dy2 = np.ascontiguousarray(dy).reshape(n, o, positions)
    bounds = [(0, n)] if cols is not None else _bounds(n, step)
    dWs, dbs = [None] * len(bounds), [None] * len(bounds)
    dx = np.empty(xpad.shape, dtype=W.dtype) if input_grad else None
    # W2^T with its rows in (i, j, c) order: each kernel offset's piece of the columns' gradient is one block
    W2T = np.ascontiguousarray(W.reshape(o, cin, -1).transpose(2, 1, 0)).reshape(-1, o) if input_grad else None

    def one(i):
        s, e = bounds[i]
        c = cols if cols is not None else im2col(xpad[s:e], kernel, stride, out).reshape(e - s, -1, positions)
        g = dy2[s:e]
        # dW^T's part, (C*kh*kw, O): the same sums as g @ c^T, with the long side first (1.39 against 1.70 ms
        # a chunk of the preset's 6 samples, one thread)
        dWs[i] = np.sum(c @ g.transpose(0, 2, 1), axis=0)
        if bias:
            dbs[i] = np.sum(g, axis=(0, 2))
        if input_grad:
            col2im((W2T @ g).reshape(e - s, -1, cin, *out), kernel, stride, xpad.shape[2:], dx[s:e])

    parallel_for(one, len(bounds))
    dW, db = np.ascontiguousarray(_ordered_sum(dWs).T), _ordered_sum(dbs) if bias else None
    return dW.reshape(W.shape), db, dx


def _ordered_sum(parts):
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


# -- MaxPool2D --------------------------------------------------------------------------------------------
class MaxPoolState:
    """What :func:`max_pool2d` keeps for its backward pass: per chunk of samples, where the running maximum
    grew (the generic lines' masks, cut by chunk)."""

    def __init__(self, bounds, grew):
        self.bounds, self.grew = bounds, grew


def max_pool2d(x, kernel, stride, out):
    """:func:`xpnet.layers.pooling.max_pool2d`: the running maximum over the kh*kw views, chunk by chunk."""
    if not floats(x) or math.prod(kernel) == 1:
        return None
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    n = x.shape[0]
    y = np.empty((n, x.shape[1], oh, ow), dtype=x.dtype)
    bounds = _bounds(n, _pool_step(x))
    grew = [None] * len(bounds)

    def one(i):
        s, e = bounds[i]
        views = [x[s:e, :, a:a + sh * (oh - 1) + 1:sh, c:c + sw * (ow - 1) + 1:sw] for a in range(kh)
                 for c in range(kw)]
        best = y[s:e]  # the running maximum, in its place in the output from the first step on
        grew[i] = [views[1] > views[0]]
        np.maximum(views[0], views[1], out=best)
        for v in views[2:]:
            grew[i].append(v > best)
            np.maximum(best, v, out=best)

    parallel_for(one, len(bounds))
    return y, MaxPoolState(bounds, grew)


def max_pool2d_backward(dy, state, kernel, stride, shape):
    """:func:`xpnet.layers.pooling.max_pool2d_backward`: each window's gradient to its first maximum, chunk
    by chunk, into one output."""
    if not isinstance(state, MaxPoolState) or not floats(dy):
        return None
    dx = np.empty(shape, dtype=dy.dtype)

    (kh, kw), (oh, ow) = kernel, dy.shape[2:]
    tiled = tuple(stride) == tuple(kernel)

    def one(i):
        s, e = state.bounds[i]
        firsts, later = [], None  # the first maximum is where the running maximum last grew, else at 0
        for g in reversed(state.grew[i]):
            firsts.append(g if later is None else g & ~later)
            later = g if later is None else later | g
        firsts.append(~later)
        firsts.reverse()
        if tiled:  # no pixel in two windows: each piece's product written straight into its pixels
            img = dx[s:e]
            img[:, :, oh * kh:, :] = 0
            img[:, :, :oh * kh, ow * kw:] = 0
            for k, first in enumerate(firsts):
                np.multiply(first, dy[s:e], out=img[:, :, k // kw:oh * kh:kh, k % kw:ow * kw:kw])
            return
        cols = np.empty((e - s, len(firsts), *dy.shape[1:]), dtype=dy.dtype)  # (n, kh*kw, C, OH, OW)
        for k, first in enumerate(firsts):
            np.multiply(first, dy[s:e], out=cols[:, k])
        col2im(cols, kernel, stride, shape[2:], dx[s:e])

    parallel_for(one, len(state.bounds))
    return dx


def _pool_step(x) -> int:
    """Samples per chunk of a pooling: ~2**18 input numbers (1 MiB in float32) on several threads; the whole
    batch on one (as the generic lines: fewer NumPy calls, which threads of ``distributed=Threads`` queue
    for, under the GIL)."""
    if threads() == 1:
        return max(1, x.shape[0])
    return max(1, min(x.shape[0], 2**18 // max(1, math.prod(x.shape[1:]))))
