"""Optimizers beyond their update formula: defaults, the limits the constructors accept, lookup by name,
in-place updates where arrays are writeable and the key-by-key path where they are not.

The formulas themselves are checked against the published equations in ``test_references.py``; here
the same float64 references (``numpy_reference.py``) check the path for immutable arrays and the edge
case ``beta1 = 0``. The last part pins the in-place updates: the state stays in its arrays, a step
allocates a fixed number of temporaries, and on NumPy the steps equal the textbook expressions bit for
bit (the tolerances above would let a reordered operation through).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Adam, AdamW, Optimizer, RMSprop, inplace, optim, to_numpy

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
    (lambda: AdamW(0.05, weight_decay=0.2), ref.adam_step, {"lr": 0.05, "weight_decay": 0.2, "decoupled": True}),
    (lambda: RMSprop(0.02, alpha=0.9, eps=0.1, momentum=0.5, weight_decay=0.01), ref.rmsprop_step,
     {"lr": 0.02, "alpha": 0.9, "eps": 0.1, "momentum": 0.5, "weight_decay": 0.01}),
], ids=["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_immutable_arrays_get_the_same_steps(dev, monkeypatch, make, reference, kwargs):
    """Where an array cannot be written in place (JAX), the new array is stored under its key."""
    monkeypatch.setattr(inplace, "is_writeable_array", lambda a: False)
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
                                  "clip_norm": None, "weight_decay_on": "all"}
    assert Adam().get_config() == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                                   "clip_norm": None, "weight_decay_on": "all"}
    assert AdamW().get_config()["weight_decay"] == 0.01
    assert RMSprop().get_config() == {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0,
                                      "clip_norm": None, "weight_decay_on": "all"}
    assert Adam().t == 0
    assert repr(SGD(0.5, momentum=0.25, nesterov=True)) == ("SGD(lr=0.5, momentum=0.25, nesterov=True, weight_decay=0.0, "
                                                            "clip_norm=None, weight_decay_on='all')")
    assert repr(Adam()) == ("Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, clip_norm=None, "
                            "weight_decay_on='all')")


def test_the_base_optimizer():
    opt = Optimizer(0.5)
    assert opt.get_config() == {"lr": 0.5, "weight_decay": 0.0, "clip_norm": None, "weight_decay_on": "all"}
    assert repr(opt) == "Optimizer(lr=0.5, weight_decay=0.0, clip_norm=None, weight_decay_on='all')"
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
    end = ", weight_decay=0.0, clip_norm=None, weight_decay_on='all')"
    assert repr(optim.get("sgd")) == "SGD(lr=0.1, momentum=0.0, nesterov=False" + end
    assert repr(optim.get("SGD", lr=0.3)) == "SGD(lr=0.3, momentum=0.0, nesterov=False" + end
    assert repr(optim.get("Momentum")) == "SGD(lr=0.1, momentum=0.9, nesterov=False" + end
    assert repr(optim.get("adam", 0.02)) == "Adam(lr=0.02, beta1=0.9, beta2=0.999, eps=1e-08" + end
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


# -- in place: the state stays in its arrays, the numbers stay the textbook's to the bit -------------------
# Every optimizer that keeps state, with the options that take another path through its step.
STATEFUL = {
    "momentum": lambda: SGD(0.1, momentum=0.9),
    "nesterov-decay": lambda: SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
    "adam": lambda: Adam(0.01),
    "adam-decay": lambda: Adam(0.01, weight_decay=0.1),
    "adamw": lambda: AdamW(0.05, weight_decay=0.2),
    "rmsprop": lambda: RMSprop(0.01),
    "rmsprop-momentum-decay": lambda: RMSprop(0.02, alpha=0.9, eps=0.1, momentum=0.5, weight_decay=0.01),
}


@pytest.mark.parametrize("name", list(STATEFUL))
def test_the_state_is_updated_in_its_own_arrays(name):
    """On NumPy, after the first step every state array (and parameter) is the same object at every later
    step, updated in place, and the gradients handed in are left as they were."""
    params, grads = _problem()
    grads = grads + _problem(1)[1]
    opt = STATEFUL[name]()
    mine = {k: v.copy() for k, v in params.items()}
    held_params = dict(mine)
    opt.step(mine, {k: v.copy() for k, v in grads[0].items()})
    held = {(k, slot): a for k, slots in opt.state.items() for slot, a in slots.items()}
    assert {slot for _, slot in held} == set(opt.slots())
    for g in grads[1:]:
        before = {key: a.copy() for key, a in held.items()}
        given = {k: v.copy() for k, v in g.items()}
        opt.step(mine, given)
        for (k, slot), a in held.items():
            assert opt.state[k][slot] is a, f"{slot} of {k} is a new array"
            assert not np.array_equal(a, before[k, slot]), f"{slot} of {k} did not change"
        assert all(mine[k] is held_params[k] for k in mine)
        for k in g:  # temporaries are the step's own: the layer's gradient buffer is not one
            np.testing.assert_array_equal(given[k], g[k], err_msg=f"the gradient of {k} was written to")


@pytest.mark.parametrize("name, temporaries", [
    ("sgd", 1), ("momentum", 1), ("nesterov", 1), ("adam", 2), ("adamw", 2), ("rmsprop", 2),
    ("rmsprop-momentum", 2)])
def test_a_step_allocates_few_temporaries_and_keeps_none(name, temporaries):
    """The peak of NumPy memory a later step allocates, in parameter sizes: Adam's m and v updated in
    place leave the denominator sqrt(v) + eps and the quotient (there were 4, 2 of them the new m and v)."""
    tracemalloc = pytest.importorskip("tracemalloc")
    make = {"sgd": lambda: SGD(0.1), "nesterov": lambda: SGD(0.1, momentum=0.9, nesterov=True),
            "adamw": lambda: AdamW(), "rmsprop-momentum": lambda: RMSprop(momentum=0.9), **STATEFUL}[name]
    rng = np.random.default_rng(0)
    n = 50_000
    params, grads = {"w": rng.normal(size=n)}, {"w": rng.normal(size=n)}
    opt = make()
    opt.step(params, grads)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        opt.step(params, grads)
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = params["w"].nbytes
    assert peak - base < (temporaries + 0.5) * size, f"{(peak - base) / size:.2f} parameter sizes at the peak"
    assert now - base < 0.5 * size


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


# References written from the documented formulas, each a fresh NumPy expression (nothing in place). The
# products are grouped as the docstrings write them; IEEE multiplication and addition of two operands
# commute exactly, so the same grouping gives the same bits whatever order the operands come in.
def _ref_sgd(p, g, state, k, t, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD: g + wd p; v = mu v + g (v = g at first); p - lr v, or p - lr (g + mu v)."""
    g = g + weight_decay * p if weight_decay else g
    if momentum:
        v = state[k, "momentum_buffer"] = g.copy() if t == 1 else momentum * state[k, "momentum_buffer"] + g
        g = g + momentum * v if nesterov else v
    return p - lr * g


def _ref_adam(p, g, state, k, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    """Kingma & Ba 2015, end of section 2: the bias corrections folded into the step size,
    alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t) and eps_hat = eps sqrt(1 - b2^t); AdamW decays p first."""
    if decoupled:
        p = p * (1.0 - lr * weight_decay) if weight_decay else p
    elif weight_decay:
        g = g + weight_decay * p
    m = state[k, "exp_avg"] = beta1 * state.get((k, "exp_avg"), np.zeros_like(g)) + (1.0 - beta1) * g
    v = state[k, "exp_avg_sq"] = beta2 * state.get((k, "exp_avg_sq"), np.zeros_like(g)) + (1.0 - beta2) * (g * g)
    alpha_t = lr * math.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    eps_hat = eps * math.sqrt(1.0 - beta2 ** t)
    return p - alpha_t * m / (np.sqrt(v) + eps_hat)


def _ref_rmsprop(p, g, state, k, t, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
    """torch.optim.RMSprop: s = alpha s + (1 - alpha) g^2; d = g / (sqrt(s) + eps); b = mu b + d."""
    g = g + weight_decay * p if weight_decay else g
    s = state[k, "square_avg"] = alpha * state.get((k, "square_avg"), np.zeros_like(g)) + (1.0 - alpha) * (g * g)
    d = g / (np.sqrt(s) + eps)
    if momentum:
        d = state[k, "momentum_buffer"] = momentum * state.get((k, "momentum_buffer"), np.zeros_like(g)) + d
    return p - lr * d


BITWISE = {
    "sgd": (lambda: SGD(0.1), _ref_sgd, {"lr": 0.1}),
    "sgd-decay": (lambda: SGD(0.1, weight_decay=0.05), _ref_sgd, {"lr": 0.1, "weight_decay": 0.05}),
    "momentum": (lambda: SGD(0.1, momentum=0.9), _ref_sgd, {"lr": 0.1, "momentum": 0.9}),
    "nesterov-decay": (lambda: SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.1), _ref_sgd,
                       {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    "adam": (lambda: Adam(0.01), _ref_adam, {"lr": 0.01}),
    "adam-eps-decay": (lambda: Adam(0.1, beta1=0.5, beta2=0.9, eps=0.3, weight_decay=0.1), _ref_adam,
                       {"lr": 0.1, "beta1": 0.5, "beta2": 0.9, "eps": 0.3, "weight_decay": 0.1}),
    "adamw": (lambda: AdamW(0.05, weight_decay=0.2), _ref_adam, {"lr": 0.05, "weight_decay": 0.2, "decoupled": True}),
    "adamw-no-decay": (lambda: AdamW(0.05, weight_decay=0.0), _ref_adam, {"lr": 0.05, "decoupled": True}),
    "rmsprop": (lambda: RMSprop(0.01), _ref_rmsprop, {"lr": 0.01}),
    "rmsprop-momentum-decay": (lambda: RMSprop(0.02, alpha=0.9, eps=0.1, momentum=0.5, weight_decay=0.01),
                               _ref_rmsprop, {"lr": 0.02, "alpha": 0.9, "eps": 0.1, "momentum": 0.5,
                                              "weight_decay": 0.01}),
}


@pytest.mark.parametrize("writeable", [True, False], ids=["in-place", "new-arrays"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(BITWISE))
def test_steps_are_the_formulas_to_the_bit(monkeypatch, name, dtype, writeable):
    """On NumPy, six steps give the parameters and the state of the reference expressions bit for bit,
    in place and on the path for immutable arrays (JAX's): neither may reorder or regroup an operation.
    (Random normal values: no signed zeros, whose sign a '+ 0.0' flips without changing any value.)"""
    if not writeable:
        monkeypatch.setattr(inplace, "is_writeable_array", lambda a: False)
    make, reference, kwargs = BITWISE[name]
    rng = np.random.default_rng(3)
    shapes = {"0.W": (7, 5), "0.b": (5,), "1.W": (2, 3, 4)}
    params = {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}
    opt, mine, state = make(), {k: v.copy() for k, v in params.items()}, {}
    for t in range(1, 7):
        grads = {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}
        opt.step(mine, {k: v.copy() for k, v in grads.items()})
        for k in params:
            params[k] = reference(params[k], grads[k], state, k, t, **kwargs)
            assert mine[k].dtype == params[k].dtype
            np.testing.assert_array_equal(_bits(mine[k]), _bits(params[k]), err_msg=f"step {t}, {k}")
        for (k, slot), expected in state.items():
            np.testing.assert_array_equal(_bits(opt.state[k][slot]), _bits(expected),
                                          err_msg=f"step {t}, {slot} of {k}")


# -- the flat path: one update over the model's flat buffer, the same bits as array by array ------------------
FLAT = {**{name: make for name, (make, _, _) in BITWISE.items()},
        "sgd-momentum-decay-matrices": lambda: SGD(0.1, momentum=0.9, weight_decay=0.05, weight_decay_on="matrices"),
        "adam-decay-matrices": lambda: Adam(0.1, weight_decay=0.1, weight_decay_on="matrices"),
        "adamw-matrices": lambda: AdamW(0.05, weight_decay=0.2, weight_decay_on="matrices"),
        "rmsprop-momentum-matrices": lambda: RMSprop(0.02, momentum=0.5, weight_decay=0.01, weight_decay_on="matrices")}


def _flat_and_plain(dtype, clip_norm=None, seed=5):
    """Six steps of each optimizer of FLAT on a model's parameters on array-api-strict (views of its flat
    buffer, stepped at once: the GPU's path, on NumPy's arithmetic) and on a plain dict of NumPy copies of
    them (array by array, NumPy's path), with the same gradients: yields (name, flat, plain, optimizers)."""
    pytest.importorskip("array_api_strict")
    dev = xpnet.device("cpu", backend="array-api-strict")
    for name, make in FLAT.items():
        rng = np.random.default_rng(seed)
        model = xpnet.Sequential([xpnet.Dense(7, 5), xpnet.Dense(5, 3)], device=dev, dtype=dtype, seed=0)
        flat = model.parameters()
        plain = {k: to_numpy(v).copy() for k, v in flat.items()}
        opts = make(), make()
        for opt in opts:
            opt.clip_norm = clip_norm
        for _ in range(6):
            grads = {k: rng.normal(size=v.shape).astype(dtype) for k, v in plain.items()}
            opts[0].step(flat, {k: dev.asarray(g.copy(), dtype) for k, g in grads.items()})
            opts[1].step(plain, {k: g.copy() for k, g in grads.items()})
        assert flat.flat.at_once and opts[0]._flat is not None and opts[1]._flat is None  # both paths taken
        yield name, flat, plain, opts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_flat_step_equals_the_per_parameter_step_to_the_bit(dtype):
    """Every optimizer (each option that takes another path, weight decay on matrices only too): stepping
    the model's flat buffer at once and stepping each array of a plain dict end with the same bits in
    every parameter and every state array, under the same state_dict keys ("exp_avg/0.W")."""
    for name, flat, plain, (flat_opt, plain_opt) in _flat_and_plain(dtype):
        for k in plain:
            np.testing.assert_array_equal(_bits(to_numpy(flat[k])), _bits(plain[k]), err_msg=f"{name}: {k}")
        mine, theirs = flat_opt.state_dict(), plain_opt.state_dict()
        assert mine.keys() == theirs.keys() and mine["state"].keys() == theirs["state"].keys(), name
        for key, a in theirs["state"].items():
            np.testing.assert_array_equal(_bits(mine["state"][key]), _bits(a), err_msg=f"{name}: {key}")


def test_the_flat_step_clips_by_the_same_global_norm_to_rounding():
    """clip_norm's norm sums the flat gradient in one reduction, not array by array: the order of the sum
    changes, so the last bit may (it does, for most of these), nothing more."""
    for name, flat, plain, _ in _flat_and_plain("float64", clip_norm=0.5):
        for k in plain:
            np.testing.assert_allclose(to_numpy(flat[k]), plain[k], rtol=1e-13, atol=1e-15, err_msg=f"{name}: {k}")
