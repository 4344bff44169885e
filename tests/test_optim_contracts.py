"""Optimizers beyond their update formula: defaults, the limits the constructors accept, lookup by name,
in-place updates where arrays are writeable and the key-by-key path where they are not.

The formulas themselves are checked against the published equations in ``test_references.py``; here
the same float64 references (``numpy_reference.py``) check the path for immutable arrays and the edge
case ``beta1 = 0``.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Adam, AdamW, Optimizer, RMSprop, _inplace, optim, to_numpy

import numpy_reference as ref


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"0.W": rng.normal(size=(3, 2)), "0.b": rng.normal(size=2)}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(3)]
    return params, grads


def _steps(dev, opt, params, grads):
    mine = {k: dev.asarray(v.copy(), "float64") for k, v in params.items()}
    for g in grads:
        opt.step(mine, {k: dev.asarray(v, "float64") for k, v in g.items()})
    return {k: to_numpy(v) for k, v in mine.items()}


@pytest.mark.parametrize("make, reference, kwargs", [
    (lambda: SGD(0.1), ref.sgd_step, {"lr": 0.1}),
    (lambda: SGD(0.1, momentum=0.9), ref.sgd_step, {"lr": 0.1, "momentum": 0.9}),
    (lambda: SGD(0.1, momentum=0.5, nesterov=True), ref.sgd_step, {"lr": 0.1, "momentum": 0.5, "nesterov": True}),
    (lambda: Adam(0.05, eps=0.1), ref.adam_step, {"lr": 0.05, "eps": 0.1}),
], ids=["sgd", "momentum", "nesterov", "adam"])
def test_immutable_arrays_get_the_same_steps(dev, monkeypatch, make, reference, kwargs):
    """Where an array cannot be written in place (JAX), the new array is stored under its key."""
    monkeypatch.setattr(_inplace, "is_writeable_array", lambda a: False)
    params, grads = _problem()
    got = _steps(dev, make(), params, grads)
    expected, state = dict(params), {}
    for g in grads:
        reference(expected, g, state, **kwargs)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: SGD(0.1, momentum=0.9), lambda: Adam()],
                         ids=["sgd", "momentum", "adam"])
def test_writeable_parameters_are_updated_in_place(make):
    """NumPy arrays are updated in place: the model's arrays stay the same objects (no allocation)."""
    params, grads = _problem()
    mine = {k: v.copy() for k, v in params.items()}
    held = dict(mine)
    opt = make()
    for g in grads:
        opt.step(mine, g)
    assert all(mine[k] is held[k] for k in mine)
    assert not np.array_equal(mine["0.W"], params["0.W"])


def test_momentum_velocity_is_a_copy_of_the_first_gradient():
    """The layer reuses its gradient buffer: the velocity must not alias it."""
    params, grads = _problem()
    opt = SGD(0.1, momentum=0.9)
    mine = {k: v.copy() for k, v in params.items()}
    g = {k: v.copy() for k, v in grads[0].items()}
    opt.step(mine, g)
    g["0.W"][...] = 0.0  # the layer overwrites its buffer in the next backward
    np.testing.assert_array_equal(opt.state["0.W"]["momentum_buffer"], grads[0]["0.W"])


def test_adam_with_beta1_zero_and_the_bias_correction(dev):
    """beta1 = 0 is allowed (no first moment: RMSprop with bias correction)."""
    params, grads = _problem(1)
    got = _steps(dev, Adam(0.01, beta1=0.0, beta2=0.99), params, grads)
    expected, state = dict(params), {}
    for g in grads:
        ref.adam_step(expected, g, state, lr=0.01, beta1=0.0, beta2=0.99)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-12, err_msg=k)


def test_defaults():
    assert SGD().get_config() == {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                                  "clip_norm": None}
    assert Adam().get_config() == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                                   "clip_norm": None}
    assert AdamW().get_config()["weight_decay"] == 0.01
    assert RMSprop().get_config() == {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0,
                                      "clip_norm": None}
    assert Adam().t == 0
    assert repr(SGD(0.5, momentum=0.25, nesterov=True)) == "SGD(lr=0.5, momentum=0.25, nesterov=True, weight_decay=0.0, clip_norm=None)"
    assert repr(Adam()) == "Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, clip_norm=None)"


def test_the_base_optimizer():
    opt = Optimizer(0.5)
    assert opt.get_config() == {"lr": 0.5, "weight_decay": 0.0, "clip_norm": None}
    assert repr(opt) == "Optimizer(lr=0.5, weight_decay=0.0, clip_norm=None)"
    with pytest.raises(NotImplementedError):
        opt.step({}, {})


@pytest.mark.parametrize("cls", [SGD, Adam])
@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, float("inf"), float("nan"), "0.1", None])
def test_learning_rate_must_be_positive_and_finite(cls, lr):
    with pytest.raises(ValueError, match=rf"^{cls.__name__}: lr must be a positive finite number, got "):
        cls(lr)


def test_constructor_limits():
    SGD(momentum=0.0), SGD(momentum=0.99), Adam(beta1=0.0, beta2=0.0)
    for momentum in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"^SGD: momentum must be in \[0, 1\)"):
            SGD(momentum=momentum)
    with pytest.raises(ValueError, match=r"^SGD: nesterov=True needs a momentum > 0$"):
        SGD(nesterov=True)
    for name in ("beta1", "beta2"):
        for b in (1.0, -0.5):
            with pytest.raises(ValueError, match=rf"^Adam: {name} must be in \[0, 1\), got"):
                Adam(**{name: b})


def test_optimizers_by_name():
    assert repr(optim.get("sgd")) == "SGD(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None)"
    assert repr(optim.get("SGD", lr=0.3)) == "SGD(lr=0.3, momentum=0.0, nesterov=False, weight_decay=0.0, clip_norm=None)"
    assert repr(optim.get("Momentum")) == "SGD(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0, clip_norm=None)"
    assert repr(optim.get("adam", 0.02)) == "Adam(lr=0.02, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, clip_norm=None)"
    opt = Adam()
    assert optim.get(opt) is opt and optim.get(opt, lr=5.0) is opt
    with pytest.raises(ValueError, match=r"^unknown optimizer 'lbfgs': choose sgd, momentum, adam, adamw or rmsprop"):
        optim.get("lbfgs")
    assert type(optim.get("adamw")).__name__ == "AdamW" and type(optim.get("RMSprop")).__name__ == "RMSprop"


def test_fit_takes_an_optimizer_by_name_with_lr(dev):
    """``fit(optimizer="sgd", lr=...)`` uses that learning rate: one full-batch step, checked by hand."""
    X = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    y = np.array([[1.0], [0.0]], np.float32)
    model = xpnet.Sequential([xpnet.Dense(2, 1, init="zeros")], device=dev, seed=0)
    model.fit(X, y, loss="mse", optimizer="sgd", lr=0.25, epochs=1, batch_size=2, shuffle=False, verbose=0)
    # out = 0, dL/dout = (0 - y) / 2, dW = X^T dout, db = sum dout
    dout = -y / 2
    np.testing.assert_allclose(model.state_dict()["0.W"], -0.25 * X.T @ dout, rtol=1e-6)
    np.testing.assert_allclose(model.state_dict()["0.b"], -0.25 * dout.sum(axis=0), rtol=1e-6)
