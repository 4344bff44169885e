"""fit's plain SGD taken inside the backward pass (xpnet/train/inbackward.py): each Dense layer steps its own
weights as soon as backward reaches it, with no stored dW.

The reference is the same fit stepped after backward, as before: ``StepAfter`` is SGD under another class
name, which fit does not take in backward (a subclass may change the rule). On the generic lines the two
must agree bit for bit; NumPy's one-row routine (a BLAS rank-1 update, or the outer product of the
scaled row without SciPy) rounds ``(lr x) dy`` instead of ``lr (x dy)``: within float32 rounding. (lr 0.3:
scaling by a power of two would round neither.)
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import backend
from xpnet.backend import _numpy
from xpnet.layers.core import sgd_dense


class StepAfter(xpnet.SGD):
    """SGD's rule, stepped by the optimizer after backward (fit leaves subclasses alone)."""


def _data(n=60, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, features), dtype=np.float32)
    y = rng.integers(0, classes, n)
    return X, y


def _model(dev=None, dtype="float32", features=12, classes=4):
    return xpnet.Sequential([xpnet.Dense(features, 9), xpnet.Sigmoid(), xpnet.Dense(9, 7), xpnet.ReLU(),
                             xpnet.Dense(7, classes, bias=False)], device=dev, seed=3, dtype=dtype)


def _fit(model, optimizer, batch_size, epochs=2, **kw):
    X, y = _data()
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, batch_size=batch_size, epochs=epochs,
              verbose=0, **kw)
    return {k: backend.to_numpy(v) for k, v in model.parameters().items()}


def _taken(model) -> bool:
    # taken in backward: the Dense layers were left with no stored gradients
    return all(not layer.grads for layer in model.layers if isinstance(layer, xpnet.Dense))


@pytest.mark.parametrize("batch_size", [5, 60])
def test_generic_lines_give_the_bits_of_a_step_after_backward(dev, batch_size):
    inside, after = _model(dev), _model(dev)
    got, want = _fit(inside, xpnet.SGD(0.3), batch_size), _fit(after, StepAfter(0.3), batch_size)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert not _taken(after)
    # where fit takes it: one process, writeable arrays stepped array by array (the CPU's NumPy and torch)
    assert _taken(inside) == (dev.backend in ("numpy", "torch") and dev.kind == "cpu")


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("scipy", [True, False], ids=["scipy-ger", "numpy-outer"])
def test_numpy_one_row_steps_within_rounding(monkeypatch, dtype, rtol, scipy):
    if scipy:
        pytest.importorskip("scipy", reason="SciPy (xpnet[blas]) gives NumPy's one-row step its BLAS rank-1 update")
    else:
        monkeypatch.setattr(_numpy, "_blas_ger", lambda char: None)
    inside, after = _model(dtype=dtype), _model(dtype=dtype)
    got, want = _fit(inside, xpnet.SGD(0.3), 1), _fit(after, StepAfter(0.3), 1)
    assert _taken(inside)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=rtol * np.abs(want[name]).max(),
                                   err_msg=name)
    assert any(not np.array_equal(got[k], want[k]) for k in want) or dtype == "float64"  # the routine ran


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scipy", [True, False], ids=["scipy-ger", "numpy-outer"])
def test_numpy_routine_against_the_generic_lines(monkeypatch, dtype, scipy):
    if scipy:
        pytest.importorskip("scipy", reason="SciPy (xpnet[blas]) gives NumPy's one-row step its BLAS rank-1 update")
    else:
        monkeypatch.setattr(_numpy, "_blas_ger", lambda char: None)
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(30, 20)).astype(dtype), rng.normal(size=20).astype(dtype)
    x, dy = rng.normal(size=(1, 30)).astype(dtype), rng.normal(size=(1, 20)).astype(dtype)
    W_ref, b_ref = W.copy(), b.copy()
    sgd_dense(W_ref, b_ref, x, dy, 0.3)
    ptr = W.ctypes.data
    assert _numpy.BACKEND.sgd_dense(W, b, x, dy, 0.3) is W and W.ctypes.data == ptr  # in W's own memory
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(W, W_ref, rtol=4 * eps, atol=4 * eps * np.abs(W_ref).max())
    assert np.abs(W - W_ref).max() > 0 or dtype == "float64" or not scipy  # (not the generic lines again)
    np.testing.assert_array_equal(b, b_ref)  # b -= lr dy: the generic bits
    # several rows: the generic lines (None)
    assert _numpy.BACKEND.sgd_dense(W, b, np.ones((2, 30), dtype), np.ones((2, 20), dtype), 0.3) is None


@pytest.mark.parametrize("optimizer", [
    xpnet.SGD(0.3, momentum=0.9), xpnet.SGD(0.3, weight_decay=1e-3), xpnet.SGD(0.3, clip_norm=1.0),
    xpnet.AdamW(1e-2)], ids=["momentum", "weight_decay", "clip_norm", "adamw"])
def test_not_taken_where_a_step_needs_the_gradients_first(optimizer):
    model = _model()
    _fit(model, optimizer, 5, epochs=1)
    assert not _taken(model)


def test_not_taken_data_parallel():
    from xpnet.distributed import Threads

    model = _model()
    _fit(model, xpnet.SGD(0.3), 6, epochs=1, distributed=Threads(2))
    assert not _taken(model)


def test_backward_stores_gradients_again_after_fit_however_it_ends():
    model = _model()

    def interrupt(epoch, logs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(model, xpnet.SGD(0.3), 5, callbacks=[interrupt])
    assert all(layer.sgd is None for layer in model.layers if isinstance(layer, xpnet.Dense))
    X, y = _data()
    loss = xpnet.losses.get("softmax_cross_entropy")
    loss.forward(model.forward(X[:5], training=True), y[:5])
    model.backward(loss.backward())
    assert set(model.gradients()) == set(model.parameters())


def test_a_schedule_reaches_the_step_taken_in_backward():
    # the layers read the optimizer's lr at each step: a schedule's lr changes their steps as it does after
    got = _fit(_model(), xpnet.SGD(0.3), 6, schedule="cosine")
    want = _fit(_model(), StepAfter(0.3), 6, schedule="cosine")
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_the_gradients_a_fit_did_not_store_are_named_when_asked_for():
    model = _model()
    _fit(model, xpnet.SGD(0.3), 5, epochs=1)
    with pytest.raises(KeyError, match=r"0\.W: no gradient stored.*plain SGD's step inside backward"):
        model.gradients()["0.W"]
    with pytest.raises(KeyError, match=r"0\.W: no gradient stored"):
        dict(model.gradients().items())
    with pytest.raises(KeyError) as bare:
        model.parameters()["9.W"]  # a name the model does not have: the plain KeyError
    assert bare.value.args == ("9.W",)
