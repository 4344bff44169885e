"""The NumPy backend's layer routines (:data:`xpnet.backend.ROUTINES`), on all the cores BLAS was given.

Each takes the arguments of the generic function of the same name in :mod:`xpnet.layers` (or
:mod:`xpnet.losses`) and computes the same numbers; the heavy passes are cut into pieces that
:func:`._pool.parallel_for` runs on the pool's threads: contiguous runs of the elementwise passes, blocks
of the large products (the convolution and pooling: :mod:`._numpy_windows`). Every piece writes its own
part of an output made once; nothing is summed across pieces here, so the numbers are the generic lines'
bit for bit (the loss aside: see :func:`softmax_cross_entropy`). A routine returns ``None`` for a case it
does not take (mixed or non-float dtypes, arrays too small to share), and the generic lines run.
"""

from __future__ import annotations

import numpy as np

from ._pool import chunks, parallel_for, threads

# An elementwise pass is cut into runs of at least this many numbers: below it, waking a thread costs
# more than the pass (a run of 2**16 float32 takes ~15 us; a handoff 5-30 us).
MIN_RUN = 2**16
_FLOATS = (np.float32, np.float64)
_PCG64 = isinstance(np.random.default_rng(0).bit_generator, np.random.PCG64)  # default_rng's generator


def floats(*arrays) -> bool:
    """Whether the arrays (``None`` skipped) are NumPy arrays of one float dtype (what the routines take)."""
    present = [a for a in arrays if a is not None]
    return all(isinstance(a, np.ndarray) for a in present) and len({a.dtype for a in present}) == 1 and \
        present[0].dtype.type in _FLOATS


def _runs(size: int) -> list[tuple[int, int]]:
    """Runs of a flat pass: a few per thread (a thread the OS sets aside holds up less), none short; one
    on one thread (each run is a NumPy call more, which threads of ``distributed=Threads`` queue for: the
    GIL)."""
    n = threads()
    return [(0, size)] if n == 1 else chunks(size, min(4 * n, size // MIN_RUN))


def _elementwise(fn, *arrays) -> None:
    """``fn(*runs)``: the same run of each of the C-contiguous ``arrays`` (of one size), run by run on the
    pool; ``fn`` writes its results into the runs of the outputs among them."""
    flat = [a.reshape(-1) for a in arrays]
    runs = _runs(arrays[0].size)

    def one(i):
        a, b = runs[i]
        fn(*(x[a:b] for x in flat))

    parallel_for(one, len(runs))


def _contiguous(*arrays) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


# -- matrix products --------------------------------------------------------------------------------------
# From SPLIT_MACS multiply-adds a product is cut over the pool, each block on one BLAS thread: the CNN's
# Dense products (75 M at batch 64), whose BLAS threads would spin for ~0.1 s after each call (OpenBLAS) and
# take a core from the pool's next region. Smaller ones stay with BLAS's own threads: waking a pool thread
# costs more than a short product gains (an MNIST MLP step at batch 128, its 784x256 products 26 M each:
# 0.78 ms on BLAS's threads, 1.25 ms with them on the pool or on one BLAS thread; quiet 2-core VM), and so
# do the GPT preset's (768x128 by 128x512, 50 M: 0.76 ms on BLAS's two threads, 0.92 ms cut over the pool;
# 2**25 put them on the pool and doubled its Dense layers' time, 15.5 -> 32.7 ms a step).
SPLIT_MACS = 2**26


def matmul(a, b):
    """``a @ b`` for 2-D float arrays: cut along the longer side of the result, each block one
    single-threaded BLAS call on its own thread (no sum is split, so the numbers are BLAS's own)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] * a.shape[1] * b.shape[1] < SPLIT_MACS or not floats(a, b) or \
            threads() == 1:
        return None
    m, n = a.shape[0], b.shape[1]
    out = np.empty((m, n), dtype=a.dtype)
    blocks = chunks(max(m, n), 2 * threads())

    def one(i):
        r = slice(*blocks[i])
        if m >= n:  # a block of rows: a row block of a, all of b
            np.matmul(a[r], b, out=out[r])
        else:  # a block of columns (strided, as BLAS takes them)
            np.matmul(a, b[:, r], out=out[:, r])

    parallel_for(one, len(blocks))
    return out


# -- activations ------------------------------------------------------------------------------------------
def relu(x):
    """:func:`xpnet.layers.activations.relu`: ``maximum(x, 0)``, run by run."""
    if x.size < 2 * MIN_RUN or not floats(x) or not _contiguous(x):
        return None
    y = np.empty_like(x)
    _elementwise(lambda a, out: np.maximum(a, 0.0, out=out), x, y)
    return y


def relu_backward(dy, y):
    """:func:`xpnet.layers.activations.relu_backward`: ``dy * [y > 0]``, the mask cast inside the product (one
    pass less than a cast array; the same products, ``dy * 1`` or ``dy * 0``), run by run on large arrays."""
    if not floats(dy, y) or dy.shape != y.shape:
        return None
    if dy.size < 2 * MIN_RUN or not _contiguous(dy, y):
        return np.multiply(dy, y > 0.0)
    dx = np.empty_like(dy)
    _elementwise(lambda g, v, out: np.multiply(g, v > 0.0, out=out), dy, y, dx)
    return dx


# -- the softmax cross-entropy --------------------------------------------------------------------------
def softmax_cross_entropy(logits, target):
    """:func:`xpnet.losses.softmax_cross_entropy` for integer labels: the true class's log-probability
    taken by index, where the generic lines make one-hot rows and multiply (the Array API has no gather
    by row). The same gradient, bit for bit; the loss summed over the batch's n values instead of n*C
    (float rounding). Other targets, and labels out of range, are the generic lines' (and their errors)."""
    if logits.ndim != 2 or getattr(target, "ndim", 0) != 1 or target.shape[0] != logits.shape[0] or \
            logits.shape[1] < 2 or target.dtype.kind not in "iu" or not floats(logits) or target.size == 0:
        return None
    if np.minimum.reduce(target) < 0 or np.maximum.reduce(target) >= logits.shape[1]:
        return None
    shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    e = np.exp(shifted)
    sum_e = np.add.reduce(e, axis=1, keepdims=True)
    true = shifted[np.arange(target.shape[0]), target]
    true -= np.log(sum_e[:, 0])
    return -np.add.reduce(true) / logits.shape[0], (e, sum_e, target)


def softmax_cross_entropy_backward(e, sum_e, target):
    """:func:`xpnet.losses.softmax_cross_entropy_backward` for integer labels: ``softmax - 1`` at each row's
    label, in place (the generic ``softmax - one_hot`` subtracts 0 elsewhere: the same numbers)."""
    if getattr(target, "ndim", 0) != 1 or target.dtype.kind not in "iu":
        return None
    p = e / sum_e
    p[np.arange(target.shape[0]), target] -= 1.0
    p /= target.shape[0]
    return p


# -- dropout ----------------------------------------------------------------------------------------------
def dropout(x, u, p: float):
    """:func:`xpnet.layers.regularization.dropout`: the mask and the product made in one go, run by run."""
    if x.size < 2 * MIN_RUN or not floats(x) or not isinstance(u, np.ndarray) or u.shape != x.shape or \
            not _contiguous(x, u):
        return None
    y, mask = np.empty_like(x), np.empty_like(x)
    scale = x.dtype.type(1.0 / (1.0 - p))  # the generic product's rounding: the float cast to x's dtype

    def one(xs, us, ys, ms):
        np.greater_equal(us, p, out=ms)  # 1.0 or 0.0, written in the mask's dtype
        ms *= scale
        np.multiply(xs, ms, out=ys)

    _elementwise(one, x, u, y, mask)
    return y, mask


def dropout_backward(dy, mask):
    """:func:`xpnet.layers.regularization.dropout_backward`: ``dy * mask``, run by run."""
    if dy.size < 2 * MIN_RUN or not floats(dy, mask) or dy.shape != mask.shape or not _contiguous(dy, mask):
        return None
    dx = np.empty_like(dy)
    _elementwise(lambda g, m, out: np.multiply(g, m, out=out), dy, mask, dx)
    return dx


def random_uniform(seed, shape: tuple, dtype: str):
    """``numpy.random.default_rng(seed).random(shape, dtype)``, the same numbers, drawn run by run.

    PCG64 can jump ahead: a run starting at draw ``a`` comes from a generator of the same seed advanced
    past the 64-bit outputs the draws before it used (one per float64, one per two float32: runs of float32
    start at even draws). ``None`` where the generator is not PCG64 (a future NumPy default).
    """
    size = int(np.prod(shape))
    dtype = np.dtype(dtype)
    per_word = 2 if dtype == np.float32 else 1
    if not _PCG64 or size < 2 * MIN_RUN or dtype.type not in _FLOATS or threads() == 1:
        return None
    out = np.empty(size, dtype=dtype)
    runs = [(a - a % per_word, b - b % per_word if b < size else b) for a, b in _runs(size)]

    def one(i):
        a, b = runs[i]
        bits = np.random.PCG64(seed)
        bits.advance(a // per_word)
        np.random.Generator(bits).random(out=out[a:b], dtype=dtype)

    parallel_for(one, len(runs))
    return out.reshape(shape)
