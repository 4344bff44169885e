"""Property-based tests (Hypothesis): random shapes, dtypes and values for layers, losses and the
batching of ``fit``, on NumPy and array-api-strict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xpnet
from xpnet import (MSE, SGD, BinaryCrossEntropy, Dense, Identity, ReLU, Sequential, Sigmoid, Softmax,
                   SoftmaxCrossEntropy, Tanh, to_numpy)

BACKENDS = ["numpy", "array-api-strict"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
dtypes = st.sampled_from(["float32", "float64"])


def finite(shape, bound=1e4):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, allow_nan=False))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(batch=st.integers(1, 17), n_in=st.integers(1, 9), n_out=st.integers(1, 9), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1))
def test_dense_shapes_dtypes_and_gradients(backend, batch, n_in, n_out, dtype, seed):
    dev = xpnet.device("cpu", backend=backend)
    layer = Dense(n_in, n_out)
    layer.build(dev, xpnet.backend.host_rng(seed), dtype)
    rng = np.random.default_rng(seed)
    x_host, dy_host = rng.normal(size=(batch, n_in)), rng.normal(size=(batch, n_out))
    x = dev.asarray(x_host, dtype)
    y = layer.forward(x)
    dx = layer.backward(dev.asarray(dy_host, dtype))
    assert y.dtype == x.dtype and dx.dtype == x.dtype and tuple(y.shape) == (batch, n_out)
    W = to_numpy(layer.params["W"]).astype(np.float64)
    x64, dy64 = to_numpy(x).astype(np.float64), to_numpy(dev.asarray(dy_host, dtype)).astype(np.float64)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(to_numpy(layer.grads["W"]), x64.T @ dy64, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(layer.grads["b"]), dy64.sum(axis=0), rtol=tol, atol=tol)
    np.testing.assert_allclose(to_numpy(dx), dy64 @ W.T, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(data=st.data(), dtype=dtypes)
def test_activations_are_finite_and_in_range(backend, data, dtype):
    dev = xpnet.device("cpu", backend=backend)
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=8))
    x = dev.asarray(data.draw(finite(shape)), dtype)
    for layer, low, high in [(Sigmoid(), 0, 1), (Tanh(), -1, 1), (Softmax(), 0, 1), (ReLU(), 0, np.inf)]:
        y = to_numpy(layer.forward(x))
        dx = to_numpy(layer.backward(dev.asarray(np.ones(shape), dtype)))
        assert np.isfinite(y).all() and np.isfinite(dx).all(), type(layer).__name__
        assert ((y >= low) & (y <= high)).all(), type(layer).__name__
    np.testing.assert_allclose(to_numpy(Softmax().forward(x)).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(data=st.data(), dtype=dtypes)
def test_losses_are_finite_nonnegative_with_gradients_of_the_prediction_shape(backend, data, dtype):
    dev = xpnet.device("cpu", backend=backend)
    batch, classes = data.draw(st.integers(1, 12)), data.draw(st.integers(2, 7))
    z = dev.asarray(data.draw(finite((batch, classes))), dtype)
    labels = dev.asarray(data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1))), "int64")
    probs = dev.asarray(data.draw(hnp.arrays(np.float64, (batch, classes), elements=st.floats(0, 1))), dtype)
    for loss, target in [(SoftmaxCrossEntropy(), labels), (SoftmaxCrossEntropy(), probs), (MSE(), labels),
                         (BinaryCrossEntropy(), probs)]:
        value = float(to_numpy(loss.forward(z, target)))
        grad = loss.backward()
        assert np.isfinite(value) and value >= -1e-6, (type(loss).__name__, value)
        assert tuple(grad.shape) == (batch, classes) and grad.dtype == z.dtype
        assert np.isfinite(to_numpy(grad)).all()
    # Softmax cross-entropy against labels: each gradient row sums to zero (softmax - one-hot).
    loss = SoftmaxCrossEntropy()
    loss.forward(z, labels)
    np.testing.assert_allclose(to_numpy(loss.backward()).sum(axis=1), 0.0, atol=1e-6)


class Recorder(Identity):
    """Remembers the batches it saw in training."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, training=False):
        if training:
            self.seen.append(to_numpy(x)[:, 0].copy())
        return x


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(n=st.integers(1, 50), batch_size=st.integers(1, 60), shuffle=st.booleans(), epochs=st.integers(1, 3))
def test_fit_sees_every_sample_once_per_epoch(backend, n, batch_size, shuffle, epochs):
    recorder = Recorder()
    model = Sequential([recorder, Dense(1, 1)], device="cpu", backend=backend, seed=0)
    X = np.arange(n, dtype=np.float32).reshape(n, 1)
    history = model.fit(X, X / n, loss=MSE(), optimizer=SGD(1e-3), epochs=epochs, batch_size=batch_size,
                        shuffle=shuffle, verbose=0)
    steps = -(-n // batch_size)
    assert len(recorder.seen) == steps * epochs
    for e in range(epochs):
        batches = recorder.seen[e * steps:(e + 1) * steps]
        assert [len(b) for b in batches] == [batch_size] * (steps - 1) + [n - batch_size * (steps - 1)]
        order = np.concatenate(batches)
        assert sorted(order.tolist()) == list(range(n))
        if not shuffle:
            assert order.tolist() == list(range(n))
    assert len(history["loss"]) == epochs and all(np.isfinite(history["loss"]))
