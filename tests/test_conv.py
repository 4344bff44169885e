"""Conv2D, the poolings, BatchNorm2d and Reshape beyond the shared harness of test_layers.py.

The oracle is PyTorch's autograd (torch.nn.functional.conv2d, max_pool2d, avg_pool2d, batch_norm) in
float64, rtol 1e-10, over a grid of shapes, strides and paddings, on every backend (skipped without
torch). Then: chunked im2col equals one chunk, ties in max pooling, save/load, errors, and a small CNN
that learns.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import (AvgPool2D, BatchNorm2d, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU, Reshape,
                   Sequential, to_numpy)
from xpnet.backend import _pool, host_rng

RTOL, ATOL = 1e-10, 1e-12


def _torch():
    return pytest.importorskip("torch", reason="PyTorch's autograd is the oracle for the convolution layers")


def _built(layer, dev, seed=0):
    layer.build(dev, host_rng(seed), "float64")
    return layer


def _randomize(layer, dev, seed=1):
    """Parameters drawn at random (a zero bias hides a wrong bias gradient)."""
    rng = np.random.default_rng(seed)
    for k, v in layer.params.items():
        layer.params[k] = dev.asarray(rng.normal(size=tuple(v.shape)), "float64")


def _close(got, want, what):
    np.testing.assert_allclose(to_numpy(got), want, rtol=RTOL, atol=ATOL, err_msg=what)


# (in_channels, out_channels, N, H, W, kernel, stride, padding, bias)
CONV_GRID = [
    (1, 2, 2, 5, 5, 3, 1, 0, True),
    (3, 4, 2, 7, 6, 3, 1, 1, True),
    (2, 3, 3, 8, 9, (3, 2), (2, 3), (1, 2), True),
    (2, 2, 1, 9, 9, 2, 2, 0, False),  # stride == kernel: windows tile the image
    (4, 3, 2, 6, 7, (1, 3), (3, 1), (0, 1), True),
    (2, 5, 2, 5, 5, 5, 1, 2, True),  # kernel as big as the image, "same" padding
    (1, 1, 2, 11, 10, 4, 3, 0, True),  # stride < kernel with a remainder dropped at the edge
]


@pytest.mark.parametrize("case", CONV_GRID, ids=lambda c: "C{}-O{}-N{}-{}x{}-k{}-s{}-p{}-{}".format(*c))
def test_conv2d_matches_torch(case, dev):
    torch = _torch()
    cin, cout, n, h, w, k, s, p, bias = case
    layer = _built(Conv2D(cin, cout, k, stride=s, padding=p, bias=bias), dev)
    _randomize(layer, dev)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, cin, h, w))
    y = layer.forward(dev.asarray(x, "float64"))
    dy = rng.normal(size=tuple(y.shape))
    dx = layer.backward(dev.asarray(dy, "float64"))

    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(to_numpy(layer.params["W"]), requires_grad=True)
    bt = torch.tensor(to_numpy(layer.params["b"]), requires_grad=True) if bias else None
    yt = torch.nn.functional.conv2d(xt, Wt, bt, stride=layer.stride, padding=layer.padding)
    yt.backward(torch.tensor(dy))
    _close(y, yt.detach().numpy(), "y")
    _close(dx, xt.grad.numpy(), "dx")
    _close(layer.grads["W"], Wt.grad.numpy(), "dW")
    if bias:
        _close(layer.grads["b"], bt.grad.numpy(), "db")
    assert set(layer.grads) == set(layer.params)


# (N, C, H, W, kernel, stride)
POOL_GRID = [
    (2, 3, 6, 6, 2, None),
    (2, 2, 7, 5, 2, None),  # odd sizes: the last row/column is in no window
    (1, 2, 7, 8, 3, 1),
    (2, 1, 9, 7, (2, 3), (1, 2)),
    (2, 2, 9, 9, 3, 2),
    (1, 1, 4, 4, 4, None),
]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", POOL_GRID, ids=lambda c: "N{}-C{}-{}x{}-k{}-s{}".format(*c))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch(kind, case, ties, dev):
    torch = _torch()
    n, c, h, w, k, s = case
    layer = (MaxPool2D if kind == "max" else AvgPool2D)(k, s)
    rng = np.random.default_rng(3)
    # small integers: many windows hold their maximum twice, where the gradient's rule shows
    x = rng.integers(0, 3, size=(n, c, h, w)).astype(np.float64) if ties else rng.normal(size=(n, c, h, w))
    y = layer.forward(dev.asarray(x, "float64"))
    dy = rng.normal(size=tuple(y.shape))
    dx = layer.backward(dev.asarray(dy, "float64"))
    xt = torch.tensor(x, requires_grad=True)
    f = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    yt = f(xt, layer.kernel_size, layer.stride)
    yt.backward(torch.tensor(dy))
    _close(y, yt.detach().numpy(), "y")
    _close(dx, xt.grad.numpy(), "dx")


def test_max_pool_gives_a_tie_to_its_first_maximum_only(dev):
    layer = MaxPool2D(2)
    x = dev.asarray(np.array([[[[5.0, 5.0], [5.0, 1.0]]]]))
    assert to_numpy(layer.forward(x)).tolist() == [[[[5.0]]]]
    # row-major window order: (0, 0) is the first of the three fives; not split three ways
    assert to_numpy(layer.backward(dev.asarray(np.array([[[[3.0]]]])))).tolist() == [[[[3.0, 0.0], [0.0, 0.0]]]]


def test_global_avg_pool_matches_torch(dev):
    torch = _torch()
    rng = np.random.default_rng(4)
    x, dy = rng.normal(size=(3, 4, 5, 6)), rng.normal(size=(3, 4))
    layer = GlobalAvgPool2D()
    y = layer.forward(dev.asarray(x, "float64"))
    dx = layer.backward(dev.asarray(dy, "float64"))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, 1).flatten(1)
    yt.backward(torch.tensor(dy))
    _close(y, yt.detach().numpy(), "y")
    _close(dx, xt.grad.numpy(), "dx")


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (2, 2, 1, 3), (6, 1, 2, 2)])
def test_batchnorm2d_matches_torch(shape, dev):
    """Training (batch statistics over N, H, W; running statistics with the unbiased variance), then
    evaluation with the running statistics: outputs, every gradient and the buffers."""
    torch = _torch()
    c = shape[1]
    layer = _built(BatchNorm2d(c, momentum=0.3, eps=1e-3), dev)
    _randomize(layer, dev)
    ref = torch.nn.BatchNorm2d(c, momentum=0.3, eps=1e-3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(to_numpy(layer.params["gamma"])))
        ref.bias.copy_(torch.from_numpy(to_numpy(layer.params["beta"])))
    rng = np.random.default_rng(5)
    for step in range(2):
        x, dy = 3.0 * rng.normal(size=shape) + 1.0, rng.normal(size=shape)
        y = layer.forward(dev.asarray(x, "float64"), training=True)
        dx = layer.backward(dev.asarray(dy, "float64"))
        ref.zero_grad()
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        yt.backward(torch.from_numpy(dy))
        _close(y, yt.detach().numpy(), f"y, step {step}")
        _close(dx, xt.grad.numpy(), f"dx, step {step}")
        _close(layer.grads["gamma"], ref.weight.grad.numpy(), "dgamma")
        _close(layer.grads["beta"], ref.bias.grad.numpy(), "dbeta")
        _close(layer.buffers["running_mean"], ref.running_mean.numpy(), "running_mean")
        _close(layer.buffers["running_var"], ref.running_var.numpy(), "running_var")
    ref.eval()
    x, dy = rng.normal(size=shape), rng.normal(size=shape)
    y = layer.forward(dev.asarray(x, "float64"))
    dx = layer.backward(dev.asarray(dy, "float64"))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(dy))
    _close(y, yt.detach().numpy(), "y, evaluation")
    _close(dx, xt.grad.numpy(), "dx, evaluation")


def test_batchnorm2d_refuses_what_torch_refuses(dev):
    layer = _built(BatchNorm2d(3), dev)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected more than 1 value per channel when training"):
        layer.forward(dev.asarray(np.ones((1, 3, 1, 1))), training=True)
    layer.forward(dev.asarray(np.ones((1, 3, 2, 1))), training=True)  # two pixels are two values
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) expects input of shape \(batch, 3, height, width\), "
                                         r"got \(4, 3\) \(BatchNorm2d takes NCHW images; use BatchNorm1d"):
        layer.forward(dev.asarray(np.ones((4, 3))))
    with pytest.raises(ValueError, match="BatchNorm2d: num_features must be a positive int"):
        BatchNorm2d(0)


# -- memory: the columns in chunks ------------------------------------------------------------------------
# per sample 2*9*3*5 = 270 numbers of columns: 810 makes chunks of 3, 3 and 1 samples
@pytest.mark.parametrize("budget", [1, 810, 10**9], ids=["one-sample-chunks", "uneven-chunks", "one-chunk"])
def test_chunked_im2col_equals_one_chunk(budget, dev):
    """The same numbers whatever the chunking: outputs, dx, dW, db (the chunks only bound the memory)."""
    rng = np.random.default_rng(6)
    x, dy = rng.normal(size=(7, 2, 6, 5)), rng.normal(size=(7, 3, 3, 5))

    def run(b):
        layer = _built(Conv2D(2, 3, 3, stride=(2, 1), padding=(1, 1)), dev)
        _randomize(layer, dev)
        layer.im2col_budget = b
        y = layer.forward(dev.asarray(x, "float64"))
        layer.cols_kept = layer._cache[1] is not None  # (backward frees the cache)
        dx = layer.backward(dev.asarray(dy, "float64"))
        return layer, [to_numpy(a) for a in (y, dx, layer.grads["W"], layer.grads["b"])]

    layer, got = run(budget)
    per_sample = 2 * 9 * 3 * 5
    assert layer._chunk(dev.asarray(np.zeros((7, 2, 8, 7))), (3, 5)) == max(1, min(7, budget // per_sample))
    # kept only when one chunk holds them (NumPy on several threads cuts the batch all the same)
    one_chunk = budget >= 7 * per_sample and not (dev.backend == "numpy" and _pool.threads() > 1)
    assert layer.cols_kept == one_chunk
    _, want = run(10**9)
    for g, w, what in zip(got, want, ("y", "dx", "dW", "db")):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13, err_msg=what)


# The MNIST preset's two convolutions, float64, no dropout: NumPy cuts the second one's batch into chunks of
# 6 samples (its cache-sized columns), so 7 and 13 end in a partial chunk there
def _preset_convolutions(dev):
    return Sequential([Reshape((1, 28, 28)), Conv2D(1, 32, 3), ReLU(), Conv2D(32, 64, 3), ReLU(), MaxPool2D(2),
                       Flatten(), Dense(9216, 10)], device=dev, seed=0, dtype="float64")


@pytest.mark.parametrize("batch", [1, 7, 13])
@pytest.mark.parametrize("budget", [None, 2**20], ids=["the-backends-chunks", "cache-sized-chunks-everywhere"])
def test_a_cnn_gives_the_same_numbers_whatever_the_chunks(budget, batch, dev):
    """Outputs and every gradient of a CNN at awkward batch sizes, with the backend's own chunking (None)
    or NumPy's cache-sized one forced on every backend, equal one whole-batch computation."""
    model = _preset_convolutions(dev)
    convs = [layer for layer in model.layers if isinstance(layer, Conv2D)]
    rng = np.random.default_rng(batch)
    x, dy = dev.asarray(rng.normal(size=(batch, 784)), "float64"), dev.asarray(rng.normal(size=(batch, 10)), "float64")

    def run(chunk_budget):
        for layer in convs:
            if chunk_budget is not None:
                layer.im2col_budget = chunk_budget
        out = to_numpy(model.forward(x, training=True))
        model.backward(dy)
        return out, {k: to_numpy(g) for k, g in model.gradients().items()}

    out, grads = run(budget)
    want_out, want_grads = run(2**62)  # one chunk: the whole batch's columns at once
    np.testing.assert_allclose(out, want_out, rtol=1e-12, atol=1e-12, err_msg="output")
    assert grads.keys() == want_grads.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], want_grads[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_cpu_libraries_chunk_for_the_cache_the_others_for_memory(dev):
    """The MNIST preset's second convolution (32 -> 64, 3x3 on 26x26: 165,888 numbers of columns a sample)
    at batch 64: NumPy and torch on the CPU build 6 samples' columns at a time (4 MiB in float32; NumPy 3 on
    each of two threads), the generic path the whole batch, cut only above windows.IM2COL_MEMORY_BUDGET (at least one sample)."""
    from xpnet.layers import windows

    layer = Conv2D(32, 64, 3)
    x = dev.asarray(np.zeros((64, 32, 26, 26)))
    cached = dev.backend == "numpy" or (dev.backend == "torch" and dev.kind == "cpu")
    share = _pool.threads() if dev.backend == "numpy" else 1  # NumPy: each of its threads its share of the cache
    assert layer._chunk(x, (24, 24)) == (6 // share if cached else 64)
    assert windows.im2col_chunk(x, 165888) == 64
    budget, ten = windows.IM2COL_MEMORY_BUDGET, x[:10, ...]
    assert windows.im2col_chunk(ten, budget // 3) == 3 and windows.im2col_chunk(ten, 2 * budget) == 1
    assert windows.chunk_bounds(13, 6) == [(0, 6), (6, 12), (12, 13)]
    layer.im2col_budget = 3 * 32 * 9 * 24 * 24  # a layer's own bound wins on every backend
    assert layer._chunk(x, (24, 24)) == 3


# -- layers in a model ---------------------------------------------------------------------------------------
def _cnn(dev=None, seed=0, dtype="float32"):
    return Sequential([Reshape((1, 8, 8)), Conv2D(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(), MaxPool2D(2),
                       Conv2D(4, 6, 3), ReLU(), AvgPool2D(1), GlobalAvgPool2D(), Dense(6, 3)],
                      device=dev, seed=seed, dtype=dtype)


def _images(n=96, seed=0):
    """Three classes of 8x8 images: a bright row, a bright column, or a bright diagonal, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = 0.3 * rng.normal(size=(n, 8, 8))
    for i, label in enumerate(y):
        k = rng.integers(1, 7)
        if label == 0:
            X[i, k, :] += 1.5
        elif label == 1:
            X[i, :, k] += 1.5
        else:
            X[i] += 1.5 * np.eye(8)
    return X.reshape(n, 64).astype(np.float32), y


def test_a_small_cnn_learns(dev):
    X, y = _images()
    model = _cnn(dev)
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=xpnet.Adam(0.02), epochs=15, batch_size=16,
                        verbose=False)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert model.evaluate(X, y)["accuracy"] > 0.9
    for k, v in model.parameters().items():
        assert v.dtype == dev.dtype("float32"), k


def test_fit_takes_images_when_a_convolution_comes_first():
    X, y = _images(32)
    model = Sequential([Conv2D(1, 2, 3), ReLU(), Flatten(), Dense(72, 3)], seed=0)
    model.fit(X.reshape(-1, 1, 8, 8), y, loss="softmax_cross_entropy", epochs=1, verbose=False)
    assert tuple(model.predict(X[:5].reshape(-1, 1, 8, 8)).shape) == (5, 3)
    with pytest.raises(ValueError, match=r"Conv2D\(in_channels=1.*expects input of shape \(batch, 1, height, "
                                         r"width\), got \(32, 64\) \(NCHW: add a Reshape\(\(1, 28, 28\)\)"):
        model.fit(X, y, loss="softmax_cross_entropy", epochs=1, verbose=False)


def test_save_and_load_round_trip(dev, tmp_path):
    X, y = _images(32)
    model = _cnn(dev)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer="adam", epochs=1, batch_size=8, verbose=False)
    xpnet.save(model, tmp_path / "cnn.npz")
    again = xpnet.load(tmp_path / "cnn.npz", device=dev)
    assert [repr(a) for a in again.layers] == [repr(a) for a in model.layers]
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(to_numpy(again.predict(X)), to_numpy(model.predict(X)))


def test_conv_weights_are_he_normal_by_default_and_the_same_on_every_backend(dev):
    layer = Conv2D(8, 16, 3)
    layer.build(dev, host_rng(0))
    W = to_numpy(layer.params["W"])
    assert W.shape == (16, 8, 3, 3) and W.dtype == np.float32
    assert abs(W.std() - np.sqrt(2 / 72)) < 0.01  # fan_in = 8 * 3 * 3
    ref = Conv2D(8, 16, 3)
    ref.build(xpnet.device("cpu"), host_rng(0))
    np.testing.assert_array_equal(W, ref.params["W"])
    assert not to_numpy(layer.params["b"]).any()


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(0, 2, 3), "Conv2D: in_channels must be a positive int"),
    (lambda: Conv2D(1, 2, 0), r"Conv2D: kernel_size must be an int >= 1 or a pair"),
    (lambda: Conv2D(1, 2, (3, 3, 3)), r"Conv2D: kernel_size must be an int >= 1 or a pair"),
    (lambda: Conv2D(1, 2, 3, stride=0), r"Conv2D: stride must be an int >= 1"),
    (lambda: Conv2D(1, 2, 3, padding=-1), r"Conv2D: padding must be an int >= 0"),
    (lambda: Conv2D(1, 2, 3, init="normal"), "unknown initializer 'normal'"),
    (lambda: MaxPool2D(2.0), r"MaxPool2D: kernel_size must be an int >= 1"),
    (lambda: AvgPool2D(2, stride=(1, 0)), r"AvgPool2D: stride must be an int >= 1"),
    (lambda: Reshape((2, -1, -1)), "Reshape: shape is one sample's shape"),
    (lambda: Reshape(()), "Reshape: shape is one sample's shape"),
])
def test_bad_arguments_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_say_what_was_expected(dev):
    conv = Conv2D(3, 2, 5)
    conv.build(dev, host_rng(0))
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 3, height, width\), got \(2, 1, 8, 8\)"):
        conv.forward(dev.asarray(np.ones((2, 1, 8, 8))))
    with pytest.raises(ValueError, match=r"the input's 4x8 pixels \(padded by 0x0\) are smaller than the 5x5 kernel"):
        conv.forward(dev.asarray(np.ones((2, 3, 4, 8))))
    with pytest.raises(ValueError, match=r"MaxPool2D\(kernel_size=\[2, 2\], stride=\[2, 2\]\) expects input of shape "
                                         r"\(batch, channels, height, width\), got \(2, 4\)"):
        MaxPool2D(2).forward(dev.asarray(np.ones((2, 4))))
    with pytest.raises(ValueError, match=r"Reshape\(shape=\[3, 3\]\) cannot hold a sample of shape \(8,\)"):
        Reshape((3, 3)).forward(dev.asarray(np.ones((2, 8))))


def test_a_convolution_needs_no_input_gradient_as_the_first_layer(dev):
    model = Sequential([Conv2D(1, 2, 3), ReLU(), Flatten(), Dense(8, 2)], device=dev, seed=0)
    out = model.forward(dev.asarray(np.ones((2, 1, 4, 4))), training=True)
    assert model.backward(dev.asarray(np.ones(tuple(out.shape)))) is None
    assert set(model.gradients()) == {"0.W", "0.b", "3.W", "3.b"}


# -- the backends' own window routines against the generic Array API lines ---------------------------------
def _window_cases(count=40, seed=7):
    """Random (N, C, H, W, kernel, stride, padding): overlapping, tiling (stride == kernel, with and without
    rows and columns left over) and gapped windows (stride > kernel)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        kernel = tuple(int(k) for k in rng.integers(1, 5, size=2))
        stride = kernel if i % 4 == 0 else tuple(int(s) for s in rng.integers(1, 5, size=2))
        pad = tuple(int(p) for p in rng.integers(0, 3, size=2))
        h, w = (int(kernel[a] + rng.integers(0, 9)) for a in range(2))
        cases.append((int(rng.integers(1, 4)), int(rng.integers(1, 4)), h, w, kernel, stride, pad))
    return cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_window_routines_equal_the_generic_lines(dtype):
    """NumPy's im2col (a strided view) and col2im (slice-adds into one buffer) give what the generic
    stack-and-concatenate lines give, bit for bit: the same sums in the same order."""
    from array_api_compat import numpy as xp

    from xpnet import backend
    from xpnet.layers import windows

    fast_im2col, fast_col2im = backend.routine(xp, "im2col"), backend.routine(xp, "col2im")
    assert fast_im2col is not None and fast_col2im is not None
    rng = np.random.default_rng(8)
    for n, c, h, w, kernel, stride, pad in _window_cases():
        x = windows.pad2d(rng.normal(size=(n, c, h, w)).astype(dtype), *pad)
        out = tuple(windows.output_size(s, k, st, 0) for s, k, st in zip(x.shape[2:], kernel, stride))
        what = f"N{n} C{c} {h}x{w} kernel {kernel} stride {stride} padding {pad}"
        got, want = fast_im2col(x, kernel, stride, out), windows.im2col(x, kernel, stride, out)
        assert got.dtype == want.dtype == x.dtype and got.flags.c_contiguous, what
        np.testing.assert_array_equal(got, want, err_msg="im2col " + what)
        pieces = rng.normal(size=(n, kernel[0] * kernel[1], c, *out)).astype(dtype)
        size = x.shape[2:]
        got, want = fast_col2im(pieces, kernel, stride, size), windows.col2im(pieces, kernel, stride, size)
        assert got.dtype == want.dtype == x.dtype and got.shape == x.shape, what
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-15, atol=0,
                                   err_msg="col2im " + what)


def test_only_numpy_has_its_own_window_routines(dev):
    """The other backends run the generic lines (strict: nothing but the standard; JAX: no writes); torch
    has its own chunk rule, for the CPU."""
    from xpnet import backend

    found = [backend.routine(dev.xp, name) for name in ("im2col", "col2im", "im2col_chunk")]
    assert [f is not None for f in found] == [dev.backend == "numpy"] * 2 + [dev.backend in ("numpy", "torch")]
    with pytest.raises(ValueError, match="unknown routine 'conv2d'"):
        backend.routine(dev.xp, "conv2d")
