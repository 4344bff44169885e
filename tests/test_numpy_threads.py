"""NumPy's layer routines on all cores (xpnet/backend/_numpy_windows.py, _numpy_layers.py, _pool.py) against
the generic Array API lines they stand in for: the same numbers at awkward shapes, on one thread or several,
and the pool's own rules (errors come back, BLAS's threads are given back, nested regions run in place)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from xpnet import backend, losses
from xpnet.backend import _numpy_layers, _numpy_windows, _pool
from xpnet.layers import activations, conv, pooling, regularization, windows

TOL = {"float32": dict(rtol=2e-6, atol=1e-6), "float64": dict(rtol=1e-13, atol=1e-13)}


@pytest.fixture(params=[1, 2, 4], ids=lambda n: f"{n}-threads")
def threads(request, monkeypatch):
    """Runs the test with the pool at 1, 2 and 4 threads (4 on any machine: the cap on usable cores is lifted)."""
    monkeypatch.setattr(_pool, "usable_cores", lambda: 4)
    with threadpool_limits(limits=request.param, user_api="blas"):
        assert _pool.threads() == request.param
        yield request.param


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


# Convolutions: (N, C, O, H, W, kernel, stride, padding); the MNIST preset's second one last
CONV_CASES = [(1, 3, 4, 7, 9, (3, 3), (1, 1), (0, 0)), (13, 2, 5, 11, 8, (3, 2), (2, 1), (1, 2)),
              (7, 1, 3, 6, 6, (1, 1), (1, 1), (0, 0)), (5, 4, 2, 9, 10, (4, 3), (3, 2), (2, 0)),
              (13, 32, 64, 26, 26, (3, 3), (1, 1), (0, 0))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "N{}-C{}-O{}-{}x{}-k{}-s{}-p{}".format(*c))
def test_numpy_conv2d_equals_the_generic_lines(case, dtype, threads):
    """Forward and backward in chunks on the pool give the generic lines' numbers: y and dx bit for bit (the
    same products and sums), dW and db to rounding (summed per chunk, chunks cut evenly over the threads)."""
    n, c, o, h, w, kernel, stride, pad = case
    rng = np.random.default_rng(n * h)
    x = windows.pad2d(rng.normal(size=(n, c, h, w)).astype(dtype), *pad)
    W, b = rng.normal(size=(o, c, *kernel)).astype(dtype), rng.normal(size=o).astype(dtype)
    out = tuple(windows.output_size(s, k, st, 0) for s, k, st in zip(x.shape[2:], kernel, stride))
    dy = rng.normal(size=(n, o, *out)).astype(dtype)
    step = max(1, n // 3)
    fast = _numpy_windows.conv2d_forward(x, W, b, stride, out, step)
    want_y, cols = conv.conv2d_forward(x, W, b, stride, out, step)
    if n == 1:  # one chunk: the generic lines', which keep its columns for the backward pass
        assert fast is None and cols is not None
    else:
        y, none = fast
        assert none is None and cols is None and y.dtype == x.dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, want_y)
    got = _numpy_windows.conv2d_backward(dy, x, cols, W, stride, out, step, True, True)
    want = conv.conv2d_backward(dy, x, cols, W, stride, out, step, True, True)
    for g, wt, what in zip(got, want, ("dW", "db", "dx")):
        assert g.dtype == x.dtype and g.shape == wt.shape and g.flags.c_contiguous, what
        _close_to_rounding(g, wt, dtype, what)  # (the chunks' sums grouped otherwise on several threads)
    np.testing.assert_array_equal(got[2], want[2])


def _close_to_rounding(got, want, dtype, what=""):
    """Equal up to the rounding of sums grouped differently: relative to the largest entry."""
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=(1e-5 if dtype == "float32" else 1e-13) * scale, err_msg=what)


def test_numpy_conv2d_leaves_one_chunk_and_other_dtypes_to_the_generic_lines(threads):
    """A batch that is one chunk on one thread, or one sample, keeps its columns for the backward pass (the
    generic lines' case); several threads cut it all the same. Mixed dtypes are not taken."""
    x, W = np.ones((2, 1, 5, 5), "float32"), np.ones((3, 1, 3, 3), "float32")
    assert (_numpy_windows.conv2d_forward(x, W, None, (1, 1), (3, 3), 2) is None) == (threads == 1)
    assert _numpy_windows.conv2d_forward(x[:1], W, None, (1, 1), (3, 3), 1) is None
    assert _numpy_windows.conv2d_forward(x, W.astype("float64"), None, (1, 1), (3, 3), 1) is None
    assert _numpy_windows.conv2d_forward(x.astype("int32"), W.astype("int32"), None, (1, 1), (3, 3), 1) is None


def test_numpy_conv2d_backward_without_bias_or_input_gradient():
    rng = np.random.default_rng(3)
    x, W = rng.normal(size=(5, 2, 6, 6)), rng.normal(size=(4, 2, 3, 3))
    dy = rng.normal(size=(5, 4, 4, 4))
    got = _numpy_windows.conv2d_backward(dy, x, None, W, (1, 1), (4, 4), 2, False, False)
    want = conv.conv2d_backward(dy, x, None, W, (1, 1), (4, 4), 2, False, False)
    assert got[1:] == (None, None) and want[1:] == (None, None)
    np.testing.assert_allclose(got[0], want[0], **TOL["float64"])
    assert got[0].flags.c_contiguous


POOL_CASES = [(1, 3, 6, 6, (2, 2), (2, 2)), (13, 5, 9, 7, (2, 2), (2, 2)), (7, 2, 8, 9, (3, 2), (1, 2)),
              (5, 64, 24, 24, (2, 2), (2, 2))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "N{}-C{}-{}x{}-k{}-s{}".format(*c))
def test_numpy_max_pool_equals_the_generic_lines(case, dtype, threads):
    """Ties (to the first maximum), NaN (kept) and overlapping windows: forward and backward bit for bit."""
    n, c, h, w, kernel, stride = case
    rng = np.random.default_rng(n + c)
    x = rng.integers(0, 3, size=(n, c, h, w)).astype(dtype)  # many ties
    x[0, 0, 0, 0] = np.nan
    out = tuple(windows.output_size(s, k, st, 0) for s, k, st in zip((h, w), kernel, stride))
    dy = rng.normal(size=(n, c, *out)).astype(dtype)
    y, state = _numpy_windows.max_pool2d(x, kernel, stride, out)
    want_y, grew = pooling.max_pool2d(x, kernel, stride, out)
    np.testing.assert_array_equal(y, want_y)
    got = _numpy_windows.max_pool2d_backward(dy, state, kernel, stride, x.shape)
    _same_bits(got, pooling.max_pool2d_backward(dy, grew, kernel, stride, x.shape))  # -0.0 where dy < 0 too
    assert _numpy_windows.max_pool2d_backward(dy, grew, kernel, stride, x.shape) is None  # not its own state


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [2 * _numpy_layers.MIN_RUN + 3, 1_000_003])
def test_numpy_elementwise_passes_equal_the_generic_lines(size, dtype, threads):
    """ReLU and Dropout forward and backward, run by run: the same bits (signed zeros included)."""
    rng = np.random.default_rng(size)
    x, dy = rng.normal(size=(size,)).astype(dtype), rng.normal(size=(size,)).astype(dtype)
    x[:5] = [0.0, -0.0, np.nan, np.inf, -np.inf]
    y = _numpy_layers.relu(x)
    np.testing.assert_array_equal(y, activations.relu(x))
    _same_bits(_numpy_layers.relu_backward(dy, y), activations.relu_backward(dy, y))
    u = rng.random(size, dtype="float32")
    u[:5] = 0.9  # kept: no inf * 0
    u[5:7] = [0.25, 0.5]  # u == p is kept ([u >= p])
    for p in (0.25, 0.5, 0.1):
        (got, mask), (want, want_mask) = _numpy_layers.dropout(x, u, p), regularization.dropout(x, u, p)
        _same_bits(mask, want_mask)
        _same_bits(got, want)
        _same_bits(_numpy_layers.dropout_backward(dy, mask), regularization.dropout_backward(dy, want_mask))


def _same_bits(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(f"u{got.itemsize}"), want.view(f"u{want.itemsize}"))


def test_small_or_strided_elementwise_inputs_are_left_to_the_generic_lines():
    small, strided = np.ones(100, "float32"), np.ones((2 * _numpy_layers.MIN_RUN, 4), "float32")[:, 1]
    assert _numpy_layers.relu(small) is None and _numpy_layers.relu(strided) is None
    assert _numpy_layers.dropout(small, small, 0.5) is None
    assert _numpy_layers.relu_backward(small, small.astype("float64")) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_backward_on_small_or_strided_arrays_casts_its_mask_in_the_product(dtype):
    rng, big = np.random.default_rng(5), 2 * _numpy_layers.MIN_RUN
    for dy, y in ((rng.normal(size=(7, 3)), rng.normal(size=(7, 3))),
                  (rng.normal(size=(big, 3))[:, 1], rng.normal(size=(big, 2))[:, 0])):  # strided: one pass
        dy, y = dy.astype(dtype), np.maximum(y.astype(dtype), 0.0)
        _same_bits(_numpy_layers.relu_backward(dy, y), activations.relu_backward(dy, y))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(2 * _numpy_layers.MIN_RUN + 1,), (64, 64, 12, 12), (3, 44_445)])
def test_numpy_uniform_numbers_are_default_rngs_drawn_in_runs(shape, dtype, threads):
    """Dropout's masks do not change: each run's generator jumps to where the one generator would be."""
    seed = np.random.SeedSequence([12, 34])
    got = backend.LIBRARIES["numpy"].random_uniform(None, "cpu", seed, shape, dtype)
    _same_bits(got, np.random.default_rng(seed).random(shape, dtype=dtype))


@pytest.mark.parametrize("transposed", ["none", "a", "b"])
def test_large_products_cut_over_the_threads_equal_matmul(transposed, threads, monkeypatch):
    """Blocks of rows or columns (transposed operands as views), each on one BLAS thread: ``a @ b``; BLAS
    is given its count back after."""
    monkeypatch.setattr(_numpy_layers, "SPLIT_MACS", 1)
    seen = []
    real_matmul = np.matmul

    def spy(*args, **kwargs):
        seen.append(_pool._blas()[0].num_threads)
        return real_matmul(*args, **kwargs)

    monkeypatch.setattr(_numpy_layers.np, "matmul", spy)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 50)).astype("float32"), rng.normal(size=(50, 61)).astype("float32")
    if transposed == "a":
        a = np.ascontiguousarray(a.T).T
    if transposed == "b":
        b = np.ascontiguousarray(b.T).T
    before = _blas_threads()
    for x, y in ((a, b), (a[:5], b)):  # a result taller than wide, and one wider than tall
        got = _numpy_layers.matmul(x, y)
        if threads == 1:  # nothing to share out: the generic line
            assert got is None
            continue
        np.testing.assert_allclose(got, real_matmul(x, y), rtol=1e-6, atol=1e-5)
    dy = rng.normal(size=(37, 61)).astype("float32")  # Dense's dW = x.T @ dy
    got = backend.routine(backend.namespace(a), "matmul_tn")(a, dy)
    assert (got is None) == (threads == 1)
    if got is not None:
        np.testing.assert_allclose(got, a.T @ dy, rtol=1e-6, atol=1e-5)
    assert set(seen) <= {1} and _blas_threads() == before


def test_products_below_the_split_stay_with_blas():
    """The MLP's 784x256 products at batch 128 (26 M multiply-adds) and a batch-1 step's: the generic line."""
    for rows in (128, 1):
        assert _numpy_layers.matmul(np.ones((rows, 784), "float32"), np.ones((784, 256), "float32")) is None


# -- the pool --------------------------------------------------------------------------------------------
def test_parallel_for_runs_each_item_once_on_several_threads(threads):
    seen, names = [0] * 50, set()

    def one(i):
        seen[i] += 1
        names.add(threading.get_ident())

    _pool.parallel_for(one, 50)
    assert seen == [1] * 50
    assert len(names) <= threads


def test_parallel_for_raises_what_an_item_raised_and_gives_blas_its_threads_back(threads):
    before = _blas_threads()

    def one(i):
        assert _blas_threads() == [1] * len(before) or threads == 1  # one BLAS thread per product inside
        if i == 7:
            raise KeyError("item 7")

    with pytest.raises(KeyError, match="item 7"):
        _pool.parallel_for(one, 20)
    assert _blas_threads() == before
    _pool.parallel_for(lambda i: None, 20)  # the pool still works


def test_a_region_returns_only_when_every_thread_is_done(threads):
    """Even when the calling thread's own item fails at once, the others finish before the error comes back
    (they write into arrays the caller is about to read)."""
    finished = []

    def one(i):
        if threading.current_thread() is threading.main_thread():
            raise ValueError("the caller's item")
        time.sleep(0.02)
        finished.append(i)

    with pytest.raises(ValueError, match="the caller's item"):
        _pool.parallel_for(one, 2 * threads)
    done = list(finished)
    time.sleep(0.1)
    assert finished == done  # nothing was still running when the region returned
    assert len(done) >= threads - 1


def test_the_threads_keep_the_callers_numpy_error_handling(threads):
    """np.errstate around a layer holds on every thread, as it would on one (NumPy keeps it in a context
    variable, which a thread does not inherit)."""
    seen = []

    def one(i):
        time.sleep(0.005)  # every thread gets items
        seen.append((threading.get_ident(), np.geterr()["invalid"]))

    with np.errstate(invalid="raise"):
        _pool.parallel_for(one, 4 * threads)
    assert {mode for _, mode in seen} == {"raise"}
    assert len({name for name, _ in seen}) == threads
    x = np.full(4 * _numpy_layers.MIN_RUN, np.inf, dtype="float32")
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        _numpy_layers.dropout(x, np.zeros_like(x), 0.5)  # every entry dropped: inf * 0


def test_a_region_inside_a_region_runs_in_place(threads):
    inner_threads = []

    def one(i):
        inner_threads.append(_pool.threads())
        _pool.parallel_for(lambda j: None, 3)

    _pool.parallel_for(one, 4)
    assert inner_threads == [1] * 4


def test_chunks_cover_the_range_without_overlap():
    assert _pool.chunks(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert _pool.chunks(2, 5) == [(0, 1), (1, 2)]
    assert _pool.chunks(0, 4) == [(0, 0)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 2), (13, 10), (128, 10), (7, 1000)])
def test_numpy_softmax_cross_entropy_on_labels_equals_the_generic_lines(shape, dtype):
    """Integer labels gathered by index: the gradient bit for bit, the loss to rounding; logits far apart too."""
    rng = np.random.default_rng(shape[0])
    logits = (rng.normal(size=shape) * 30).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    loss, saved = _numpy_layers.softmax_cross_entropy(logits, labels)
    want, want_saved = losses.softmax_cross_entropy(logits, labels)
    assert type(loss) is type(want) and loss.dtype == want.dtype
    np.testing.assert_allclose(loss, want, **TOL[dtype])
    _same_bits(_numpy_layers.softmax_cross_entropy_backward(*saved), losses.softmax_cross_entropy_backward(*want_saved))


def test_other_targets_are_left_to_the_generic_lines_and_their_errors():
    logits = np.zeros((3, 4), "float32")
    for target in (np.array([0, 4, 1]), np.array([0, -1, 1]), np.eye(4, dtype="float32")[:3], np.array([0, 1]),
                   np.array([[0], [1], [2]])):
        assert _numpy_layers.softmax_cross_entropy(logits, target) is None
    assert _numpy_layers.softmax_cross_entropy_backward(logits, logits[:, :1], logits) is None
    with pytest.raises(ValueError, match="2 targets for 3 predictions"):
        losses.SoftmaxCrossEntropy().forward(logits, np.array([0, 1]))


def _small_cnn():
    from xpnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sequential

    return Sequential([Conv2D(1, 4, 3), ReLU(), Conv2D(4, 8, 3, padding=1), ReLU(), MaxPool2D(2), Dropout(0.25),
                       Flatten(), Dense(8 * 6 * 6, 10)], seed=3)


def _fit_small_cnn():
    rng = np.random.default_rng(0)
    X, y = rng.random((60, 1, 14, 14), dtype="float32"), rng.integers(0, 10, 60)
    model = _small_cnn()
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer="adamw", batch_size=20, epochs=2, verbose=0)
    return history.history["loss"], {k: v.copy() for k, v in model.state_dict().items()}


def test_a_fit_on_several_threads_is_the_same_every_time_and_one_threads_to_rounding(threads, monkeypatch):
    """The threads take the chunks in any order, but each writes its own place and the sums go in chunk
    order: two runs give the same bits. Against one thread: the chunks are cut otherwise, so rounding."""
    monkeypatch.setattr(_numpy_layers, "MIN_RUN", 64)  # small arrays on the pool too
    monkeypatch.setattr(_numpy_layers, "SPLIT_MACS", 1)
    loss_a, state_a = _fit_small_cnn()
    loss_b, state_b = _fit_small_cnn()
    assert loss_a == loss_b
    for k in state_a:
        _same_bits(state_a[k], state_b[k])
    with threadpool_limits(limits=1, user_api="blas"):
        loss_1, state_1 = _fit_small_cnn()
    np.testing.assert_allclose(loss_a, loss_1, rtol=1e-5)
    for k in state_a:
        _close_to_rounding(state_a[k], state_1[k], "float32", k)
