"""One harness that every layer, activation and loss goes through, on every backend.

For each case: the forward pass against a NumPy reference, the backward pass against float64 central
differences computed on the same backend, and the output invariants (same namespace, device and dtype
as the input; gradients too).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from array_api_compat import array_namespace, device

import xpnet
from numpy.lib.stride_tricks import sliding_window_view

from xpnet import (GELU, MSE, AvgPool2D, BatchNorm1d, BatchNorm2d, BinaryCrossEntropy, Conv2D, CrossEntropy, Dense,
                   Dropout, Flatten, GlobalAvgPool2D, Identity, LayerNorm, LeakyReLU, MaxPool2D, MultiHeadAttention,
                   PositionalEmbedding, ReLU, Reshape, Residual, Sigmoid, Softmax, SoftmaxCrossEntropy, Step, Tanh,
                   to_numpy)

from numpy_reference import central_difference


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _windows(x, kernel, stride, pad=(0, 0)):
    """(N, C, OH, OW, kh, kw): every window of the zero-padded image, by NumPy's own sliding view."""
    x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    return sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]


def _conv(x, p, kernel, stride=(1, 1), pad=(0, 0)):
    y = np.einsum("ncpqij,ocij->nopq", _windows(x, kernel, stride, pad), p["W"])
    return y + p["b"][:, None, None] if "b" in p else y


def _channels(v):
    return v[None, :, None, None]


def _attention(x, p, heads, causal=True):
    """Self-attention written with NumPy: heads as blocks of the q, k, v columns, softmax(q k^T / sqrt(hd) + M) v."""
    (B, T, d), hd = x.shape, x.shape[2] // heads
    q, k, v = (a.reshape(B, T, heads, hd).transpose(0, 2, 1, 3) for a in np.split(x @ p["W_qkv"] + p["b_qkv"], 3, -1))
    S = q @ k.swapaxes(-1, -2) / np.sqrt(hd)
    if causal:
        S = np.where(np.tri(T, dtype=bool), S, -np.inf)
    return (_softmax(S) @ v).transpose(0, 2, 1, 3).reshape(B, T, d) @ p["W_o"] + p["b_o"]


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _layer_norm(x, p, eps=1e-5):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * p["gamma"] + p["beta"]


# id -> (make layer, input shape, NumPy reference forward(x, params), finite-difference check?)
LAYERS = {
    "Dense": (lambda: Dense(5, 3), (4, 5), lambda x, p: x @ p["W"] + p["b"], True),
    "Dense-glorot-nobias": (lambda: Dense(5, 3, init="glorot_uniform", bias=False), (4, 5),
                            lambda x, p: x @ p["W"], True),
    # one sample: dW = x^T dy takes the outer-product path
    "Dense-one-sample": (lambda: Dense(5, 3), (1, 5), lambda x, p: x @ p["W"] + p["b"], True),
    "Dense-he": (lambda: Dense(6, 2, init="he_normal"), (3, 6), lambda x, p: x @ p["W"] + p["b"], True),
    "Flatten": (Flatten, (4, 2, 3), lambda x, p: x.reshape(4, -1), True),
    "Sigmoid": (Sigmoid, (4, 3), lambda x, p: 1 / (1 + np.exp(-x)), True),
    "Tanh": (Tanh, (4, 3), lambda x, p: np.tanh(x), True),
    "ReLU": (ReLU, (4, 3), lambda x, p: np.maximum(x, 0), True),
    "LeakyReLU": (lambda: LeakyReLU(0.1), (4, 3), lambda x, p: np.where(x > 0, x, 0.1 * x), True),
    "Softmax": (Softmax, (4, 3), lambda x, p: _softmax(x), True),
    "Identity": (Identity, (4, 3), lambda x, p: x, True),
    # The step's derivative is 0 almost everywhere; its backward is straight-through by design.
    "Step": (Step, (4, 3), lambda x, p: (x >= 0).astype(x.dtype), False),
    # Evaluation mode: the identity, and the running statistics (zeros and ones when built).
    "Dropout-eval": (lambda: Dropout(0.5), (4, 3), lambda x, p: x, True),
    "BatchNorm1d-eval": (lambda: BatchNorm1d(3), (4, 3),
                         lambda x, p: x / np.sqrt(1 + 1e-5) * p["gamma"] + p["beta"], True),
    # Training mode (in TRAINING below): the batch's own statistics, which depend on x.
    "BatchNorm1d-train": (lambda: BatchNorm1d(3), (5, 3),
                          lambda x, p: (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) * p["gamma"] + p["beta"], True),
    "Conv2D": (lambda: Conv2D(2, 3, 3), (2, 2, 5, 5), lambda x, p: _conv(x, p, (3, 3)), True),
    "Conv2D-stride-pad-nobias": (lambda: Conv2D(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), bias=False), (2, 2, 6, 5),
                                 lambda x, p: _conv(x, p, (3, 2), (2, 1), (1, 2)), True),
    "Conv2D-1x1-stride3": (lambda: Conv2D(3, 2, 1, stride=3, init="glorot_uniform"), (2, 3, 7, 5),
                           lambda x, p: _conv(x, p, (1, 1), (3, 3)), True),
    "MaxPool2D": (lambda: MaxPool2D(2), (2, 2, 5, 4), lambda x, p: _windows(x, (2, 2), (2, 2)).max(axis=(-2, -1)),
                  True),
    "MaxPool2D-overlapping": (lambda: MaxPool2D((3, 2), stride=(1, 2)), (2, 2, 5, 5),
                              lambda x, p: _windows(x, (3, 2), (1, 2)).max(axis=(-2, -1)), True),
    "AvgPool2D": (lambda: AvgPool2D(2), (2, 2, 4, 5), lambda x, p: _windows(x, (2, 2), (2, 2)).mean(axis=(-2, -1)),
                  True),
    "AvgPool2D-strided": (lambda: AvgPool2D(3, stride=2), (2, 2, 7, 6),
                          lambda x, p: _windows(x, (3, 3), (2, 2)).mean(axis=(-2, -1)), True),
    "GlobalAvgPool2D": (GlobalAvgPool2D, (2, 3, 4, 5), lambda x, p: x.mean(axis=(2, 3)), True),
    "Reshape": (lambda: Reshape((3, -1)), (4, 6), lambda x, p: x.reshape(4, 3, 2), True),
    "Reshape-fixed": (lambda: Reshape((2, 1, 3)), (4, 3, 2), lambda x, p: x.reshape(4, 2, 1, 3), True),
    "BatchNorm2d-eval": (lambda: BatchNorm2d(3), (2, 3, 4, 4),
                         lambda x, p: x / np.sqrt(1 + 1e-5) * _channels(p["gamma"]) + _channels(p["beta"]), True),
    "BatchNorm2d-train": (lambda: BatchNorm2d(3), (2, 3, 3, 4),
                          lambda x, p: ((x - x.mean((0, 2, 3), keepdims=True)) / np.sqrt(x.var((0, 2, 3), keepdims=True)
                                        + 1e-5) * _channels(p["gamma"]) + _channels(p["beta"])), True),
    "MultiHeadAttention": (lambda: MultiHeadAttention(8, 2), (3, 5, 8), lambda x, p: _attention(x, p, 2), True),
    "MultiHeadAttention-not-causal-T1": (lambda: MultiHeadAttention(6, 3, causal=False), (2, 1, 6),
                                         lambda x, p: _attention(x, p, 3, causal=False), True),
    "Residual": (lambda: Residual([MultiHeadAttention(4, 2), Tanh()]), (2, 3, 4),
                 lambda x, p: x + np.tanh(_attention(x, {k[2:]: v for k, v in p.items()}, 2)), True),
    # the sequence layers on (batch, T, dim) (Embedding takes integers: tests/test_sequence_layers.py)
    "Dense-3d": (lambda: Dense(5, 3), (2, 4, 5), lambda x, p: x @ p["W"] + p["b"], True),
    "GELU": (GELU, (4, 3), lambda x, p: _gelu_tanh(x), True),
    "LayerNorm": (lambda: LayerNorm(5), (2, 3, 5), _layer_norm, True),
    "PositionalEmbedding": (lambda: PositionalEmbedding(6, 3), (2, 4, 3), lambda x, p: x + p["W"][:4], True),
}
# Registered layers whose input is not floats, each with a harness of its own.
ELSEWHERE = {"Embedding": "tests/test_sequence_layers.py", "TiedDense": "tests/test_gpt.py"}
# Cases run with training=True (the others with the default, False). Dropout's training mode draws a new
# mask per call, which finite differences cannot follow: tests/test_regularization.py checks it.
TRAINING = {"BatchNorm1d-train", "BatchNorm2d-train"}


def _inputs(shape, seed=0):
    # Keep inputs away from the kinks of ReLU/LeakyReLU/Step so central differences are exact there.
    x = np.random.default_rng(seed).normal(size=shape)
    return np.sign(x) * (np.abs(x) + 0.1)


def _build(make, dev, dtype, seed=0):
    layer = make()
    layer.build(dev, xpnet.backend.host_rng(seed), dtype)
    return layer


def _assert_like(out, ref, what):
    """``out`` lives where ``ref`` lives: same namespace, device and dtype."""
    assert array_namespace(out) is array_namespace(ref), f"{what}: namespace changed"
    assert device(out) == device(ref), f"{what}: device changed from {device(ref)} to {device(out)}"
    assert out.dtype == ref.dtype, f"{what}: dtype changed from {ref.dtype} to {out.dtype}"


@pytest.mark.parametrize("case", list(LAYERS))
def test_layer_forward_matches_numpy(case, dev):
    make, shape, reference, _ = LAYERS[case]
    layer = _build(make, dev, "float32")
    x_host = _inputs(shape).astype(np.float32)
    x = dev.asarray(x_host)
    y = layer.forward(x, training=case in TRAINING)
    _assert_like(y, x, f"{case}.forward")
    params = {k: to_numpy(v).astype(np.float64) for k, v in layer.params.items()}
    np.testing.assert_allclose(to_numpy(y), reference(x_host.astype(np.float64), params), rtol=1e-5, atol=1e-6)

    dx = layer.backward(dev.asarray(np.ones(y.shape)))
    if dx is not None:
        _assert_like(dx, x, f"{case}.backward")
    for k, g in layer.grads.items():
        _assert_like(g, layer.params[k], f"{case}.grads[{k!r}]")


@pytest.mark.parametrize("case", [c for c, v in LAYERS.items() if v[3]])
def test_layer_backward_matches_central_differences(case, dev):
    make, shape, _, _ = LAYERS[case]
    layer = _build(make, dev, "float64")
    x_host = _inputs(shape)
    training = case in TRAINING
    r = np.random.default_rng(1).normal(size=layer.forward(dev.asarray(x_host, "float64"), training).shape)
    params_host = {k: to_numpy(v).copy() for k, v in layer.params.items()}

    def objective():
        for k, v in params_host.items():
            layer.params[k] = dev.asarray(v, "float64")
        return float(np.sum(to_numpy(layer.forward(dev.asarray(x_host, "float64"), training)) * r))

    objective()
    dx = layer.backward(dev.asarray(r, "float64"))
    grads = {k: to_numpy(g) for k, g in layer.grads.items()}
    np.testing.assert_allclose(to_numpy(dx), central_difference(objective, x_host), rtol=1e-6, atol=1e-8)
    for k in params_host:
        np.testing.assert_allclose(grads[k], central_difference(objective, params_host[k]),
                                   rtol=1e-6, atol=1e-8, err_msg=f"{case} grads[{k!r}]")


@pytest.mark.parametrize("case", list(LAYERS))
def test_compute_output_shape_is_the_shape_forward_gives(case, dev):
    """Each layer owns its shapes: summary(), fit's checks and the export read them instead of running it."""
    make, shape, _, _ = LAYERS[case]
    layer = _build(make, dev, "float32")
    shapes = [shape, (1, 2, 3, 4)] if layer.keeps_shape else [shape]  # any shape at all: another rank too
    for s in shapes:
        y = layer.forward(dev.asarray(_inputs(s).astype(np.float32)), training=case in TRAINING)
        assert layer.compute_output_shape(s) == tuple(y.shape), f"{case} on {s}"
        assert layer.compute_output_shape((None, *s[1:])) == (None, *y.shape[1:]), f"{case}: the batch passes"


def test_every_registered_layer_is_in_the_harness():
    """A new layer joins the cases above, and so has its forward, backward and shapes checked."""
    # (layers that other test modules register for themselves, such as tests/lm_tiny.py's, are not xpnet's)
    ours = {name for name, cls in xpnet.layers.LAYERS.items() if cls.__module__.startswith("xpnet.")}
    assert {type(make()).__name__ for make, *_ in LAYERS.values()} | set(ELSEWHERE) == ours


@pytest.mark.parametrize("make, shape", [
    (lambda: Dense(5, 3), (2, 4)), (lambda: Dense(5, 3), (2, 5, 1)), (lambda: BatchNorm1d(3), (2, 3, 4)),
    (lambda: BatchNorm2d(3), (2, 3)), (lambda: Conv2D(2, 3, 3), (2, 1, 5, 5)), (lambda: Conv2D(2, 3, 3), (2, 2, 2, 5)),
    (lambda: MaxPool2D(2), (2, 4)), (lambda: AvgPool2D(3), (2, 1, 2, 6)), (GlobalAvgPool2D, (2, 3, 4)),
], ids=["Dense-width", "Dense-rank", "BatchNorm1d", "BatchNorm2d", "Conv2D-channels", "Conv2D-small",
        "MaxPool2D", "AvgPool2D-small", "GlobalAvgPool2D"])
def test_forward_and_compute_output_shape_refuse_alike(make, shape, dev):
    layer = _build(make, dev, "float32")
    with pytest.raises(ValueError) as by_forward:
        layer.forward(dev.asarray(np.ones(shape, np.float32)))
    with pytest.raises(ValueError) as by_shape:
        layer.compute_output_shape(shape)
    said = str(by_shape.value)
    assert said == str(by_forward.value) and said.startswith(type(layer).__name__)
    assert repr(shape) in said or f"{shape[2]}x{shape[3]} pixels" in said  # what it got


def test_reshape_refuses_a_size_it_cannot_hold(dev):
    layer = Reshape((3, -1))
    for shape in [(2, 4), (2, 5, 1)]:
        with pytest.raises(ValueError, match=rf"^Reshape\(shape=\[3, -1\]\) cannot hold a sample of shape "
                                             rf"{re.escape(repr(shape[1:]))}"):
            layer.forward(dev.asarray(np.ones(shape, np.float32)))
        with pytest.raises(ValueError, match=rf"^Reshape\(shape=\[3, -1\]\) cannot hold a sample of shape "
                                             rf"{re.escape(repr(shape[1:]))}; the sizes must have the same product$"):
            layer.compute_output_shape((None, *shape[1:]))
    with pytest.raises(ValueError, match=r"cannot hold a sample of shape \(5,\)"):
        Reshape((2, 3)).compute_output_shape((None, 5))


def test_step_is_straight_through(dev):
    layer = Step()
    dy = dev.asarray([[0.5, -2.0]])
    layer.forward(dev.asarray([[1.0, -1.0]]))
    np.testing.assert_array_equal(to_numpy(layer.backward(dy)), [[0.5, -2.0]])


def test_first_dense_skips_input_gradient(dev):
    model = xpnet.Sequential([Flatten(), Dense(6, 3), ReLU(), Dense(3, 2)], device=dev, seed=0)
    out = model.forward(dev.asarray(np.ones((2, 2, 3))), training=True)
    assert model.backward(dev.asarray(np.ones(out.shape))) is None
    assert set(model.gradients()) == {"1.W", "1.b", "3.W", "3.b"}


# -- losses ----------------------------------------------------------------------------------------
def _labels(n, k, seed=2):
    return np.random.default_rng(seed).integers(0, k, size=n)


def _soft_rows(n, k, seed=3):
    return _softmax(np.random.default_rng(seed).normal(size=(n, k)))


def _ref_logsoftmax(z):
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


# id -> (loss, prediction maker, target maker, NumPy reference(pred, target))
LOSSES = {
    "MSE-float": (MSE, lambda: np.random.default_rng(0).normal(size=(4, 3)), lambda: _soft_rows(4, 3),
                  lambda p, t: 0.5 * ((p - t) ** 2).sum() / p.shape[0]),
    "MSE-labels": (MSE, lambda: np.random.default_rng(0).normal(size=(4, 3)), lambda: _labels(4, 3),
                   lambda p, t: 0.5 * ((p - np.eye(3)[t]) ** 2).sum() / p.shape[0]),
    "SoftmaxCrossEntropy-labels": (
        SoftmaxCrossEntropy, lambda: 3 * np.random.default_rng(0).normal(size=(5, 4)), lambda: _labels(5, 4),
        lambda z, t: -_ref_logsoftmax(z)[np.arange(len(t)), t].mean()),
    "SoftmaxCrossEntropy-soft": (
        SoftmaxCrossEntropy, lambda: np.random.default_rng(0).normal(size=(5, 4)), lambda: _soft_rows(5, 4),
        lambda z, t: -(t * _ref_logsoftmax(z)).sum() / z.shape[0]),
    "CrossEntropy": (CrossEntropy, lambda: _soft_rows(4, 3, seed=5), lambda: _labels(4, 3),
                     lambda p, t: -np.log(p[np.arange(len(t)), t]).mean()),
    "BinaryCrossEntropy": (
        BinaryCrossEntropy, lambda: 2 * np.random.default_rng(0).normal(size=(6, 2)),
        lambda: np.random.default_rng(4).uniform(size=(6, 2)),
        lambda z, t: np.mean(-t * np.log(1 / (1 + np.exp(-z))) - (1 - t) * np.log(1 - 1 / (1 + np.exp(-z))))),
}


def _target(dev, t, dtype):
    return dev.asarray(t, "int64" if t.dtype.kind == "i" else dtype)


@pytest.mark.parametrize("case", list(LOSSES))
def test_loss_forward_matches_numpy(case, dev):
    make, pred_host, target_host, reference = LOSSES[case]
    p_host, t_host = pred_host(), target_host()
    pred = dev.asarray(p_host, "float32")
    loss = make()
    value = loss.forward(pred, _target(dev, t_host, "float32"))
    assert value.dtype == pred.dtype and value.ndim == 0
    np.testing.assert_allclose(float(to_numpy(value)), reference(p_host.astype(np.float32).astype(np.float64),
                                                                 t_host), rtol=1e-5)
    _assert_like(loss.backward(), pred, f"{case}.backward")


@pytest.mark.parametrize("case", list(LOSSES))
def test_loss_backward_matches_central_differences(case, dev):
    make, pred_host, target_host, _ = LOSSES[case]
    p_host, t_host = pred_host(), target_host()
    loss = make()
    target = _target(dev, t_host, "float64")

    def objective():
        return float(to_numpy(loss.forward(dev.asarray(p_host, "float64"), target)))

    objective()
    grad = to_numpy(loss.backward())
    np.testing.assert_allclose(grad, central_difference(objective, p_host), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("layer", [Sigmoid, Softmax, Tanh, GELU], ids=lambda c: c.__name__)
def test_activations_stay_finite_for_huge_inputs(layer, dev):
    x = dev.asarray([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    act = layer()
    y = act.forward(x)
    dx = act.backward(dev.asarray(np.ones((2, 3))))
    assert np.isfinite(to_numpy(y)).all() and np.isfinite(to_numpy(dx)).all()


@pytest.mark.parametrize("loss", [SoftmaxCrossEntropy, BinaryCrossEntropy, MSE], ids=lambda c: c.__name__)
def test_losses_stay_finite_for_huge_logits(loss, dev):
    z = dev.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    fn = loss()
    target = dev.asarray([0, 2], "int64") if loss is not BinaryCrossEntropy else dev.asarray([[1, 0, 1], [1, 1, 0]])
    value = fn.forward(z, target)
    assert np.isfinite(float(to_numpy(value))) and np.isfinite(to_numpy(fn.backward())).all()


def test_softmax_cross_entropy_of_huge_logits_is_exact(dev):
    z = dev.asarray([[1e4, -1e4, 0.0]])
    fn = SoftmaxCrossEntropy()
    assert float(to_numpy(fn.forward(z, dev.asarray([1], "int64")))) == pytest.approx(2e4)
    np.testing.assert_allclose(to_numpy(fn.backward()), [[1.0, -1.0, 0.0]])
