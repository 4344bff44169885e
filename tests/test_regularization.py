"""Dropout and BatchNorm1d on every backend, the device random stream behind Dropout, and buffers in the model.

References: float64 central differences on the same backend, PyTorch's own torch.nn.BatchNorm1d (float64,
rtol 1e-10; skipped without torch), and NumPy formulas written here. The layers' evaluation modes and
BatchNorm1d's training mode also go through the shared harness in test_layers.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from array_api_compat import array_namespace, device

import xpnet
from xpnet import BatchNorm1d, Dense, Dropout, ReLU, Sequential, to_numpy
from xpnet.backend import host_rng, random_uniform

from numpy_reference import central_difference


def _dropout(p, dev, seed=0):
    layer = Dropout(p)
    layer.build(dev, host_rng(seed))
    return layer


def _masks(layer, dev, n, shape=(8, 16)):
    x = dev.asarray(np.ones(shape))
    return [to_numpy(layer.forward(x, training=True)).copy() for _ in range(n)]


def _assert_like(out, ref, what):
    assert array_namespace(out) is array_namespace(ref), f"{what}: namespace changed"
    assert device(out) == device(ref), f"{what}: device changed from {device(ref)} to {device(out)}"
    assert out.dtype == ref.dtype, f"{what}: dtype changed from {ref.dtype} to {out.dtype}"


# -- the device random stream --------------------------------------------------------------------------
def test_random_uniform_is_a_function_of_key_and_counter(dev):
    u = random_uniform(dev, 7, 0, (300, 40))
    assert array_namespace(u) is dev.xp and xpnet.device_of(u) == dev and u.dtype == dev.dtype("float32")
    host = to_numpy(u)
    assert host.shape == (300, 40) and host.min() >= 0.0 and host.max() < 1.0
    assert abs(host.mean() - 0.5) < 0.01 and abs(host.var() - 1 / 12) < 0.005  # 12,000 draws: ~0.003 and 0.0008
    np.testing.assert_array_equal(to_numpy(random_uniform(dev, 7, 0, (300, 40))), host)  # replayable
    for key, counter in ((7, 1), (8, 0), (7 + 2**40, 0), (7, 2**40)):
        assert not np.array_equal(to_numpy(random_uniform(dev, key, counter, (300, 40))), host), (key, counter)
    assert random_uniform(dev, 7, 0, (2, 3), "float64").dtype == dev.dtype("float64")


def test_numpy_and_array_api_strict_draw_the_same_numbers():
    pytest.importorskip("array_api_strict")
    a = random_uniform(xpnet.device("cpu"), 3, 5, (4, 5))
    b = random_uniform(xpnet.device("cpu", backend="array-api-strict"), 3, 5, (4, 5))
    np.testing.assert_array_equal(to_numpy(b), a)


class _CuPyNamespace:
    """What the CuPy backend is handed as ``xp`` on a machine without a GPU: ``asarray`` records each
    host-to-device copy (what, and to which device) and hands the host array back."""

    float32, float64 = np.float32, np.float64

    def __init__(self):
        self.copies = []

    def asarray(self, host, device=None):
        self.copies.append((host.shape, host.dtype, device))
        return host


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_draws_numpys_numbers_on_the_host_and_copies_them_once(dtype):
    """Dropout's masks on CuPy are NumPy's, bit for bit (the stream is the same two ints, and a resumed or
    moved run replays them), and reach the GPU in one copy per draw: no generator made on the device."""
    xp, gpu = _CuPyNamespace(), object()
    u = random_uniform(xpnet.Device("cuda", 0, "cupy", xp, gpu), 3, 5, (4, 5), dtype)
    np.testing.assert_array_equal(u, random_uniform(xpnet.device("cpu"), 3, 5, (4, 5), dtype))
    assert u.dtype == np.dtype(dtype) and xp.copies == [((4, 5), np.dtype(dtype), gpu)]


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_random_uniform_refuses_a_bad_key_or_counter(bad):
    with pytest.raises(ValueError, match="random_uniform: key must be a non-negative int"):
        random_uniform(xpnet.device("cpu"), bad, 0, (2,))
    with pytest.raises(ValueError, match="random_uniform: counter must be a non-negative int"):
        random_uniform(xpnet.device("cpu"), 0, bad, (2,))


# -- Dropout ----------------------------------------------------------------------------------------------
def test_dropout_is_the_identity_at_evaluation_and_for_p_zero(dev):
    x = dev.asarray(np.random.default_rng(0).normal(size=(6, 5)))
    layer = _dropout(0.5, dev)
    assert layer.forward(x) is x and layer(x, training=False) is x
    dy = dev.asarray(np.ones((6, 5)))
    assert layer.backward(dy) is dy
    assert layer.rng_state()["counter"] == 0  # evaluation draws nothing
    zero = _dropout(0.0, dev)
    assert zero.forward(x, training=True) is x and zero.rng_state()["counter"] == 0


def test_dropout_keeps_inputs_scaled_by_one_over_one_minus_p(dev):
    x_host = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
    x = dev.asarray(x_host)
    y = _dropout(0.25, dev).forward(x, training=True)
    _assert_like(y, x, "Dropout.forward")
    y = to_numpy(y)
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(y[kept], x_host[kept] / 0.75, rtol=1e-6)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zeroes_a_fraction_p(dev, p):
    # 100,000 draws: the fraction's standard deviation is below 0.0016, so 0.01 is more than 6 of them
    # (and the seed is fixed, so this cannot flake).
    y = _masks(_dropout(p, dev, seed=1), dev, 1, shape=(1000, 100))[0]
    assert abs((y == 0).mean() - p) < 0.01


def test_dropout_same_seed_same_masks_and_new_masks_each_step(dev):
    a, b = _masks(_dropout(0.5, dev, seed=3), dev, 3), _masks(_dropout(0.5, dev, seed=3), dev, 3)
    for i in range(3):
        np.testing.assert_array_equal(a[i], b[i])
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    other = _masks(_dropout(0.5, dev, seed=4), dev, 1)[0]
    assert not np.array_equal(other, a[0])
    # in a model: one seed, one run
    runs = []
    for _ in range(2):
        model = Sequential([Dense(16, 16), Dropout(0.5), Dense(16, 4)], device=dev, seed=9)
        x = dev.asarray(np.ones((8, 16)))
        runs.append([to_numpy(model.forward(x, training=True)) for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[0][1])


def test_dropout_rng_state_replays_the_masks(dev):
    layer = _dropout(0.5, dev, seed=5)
    _masks(layer, dev, 2)
    state = json.loads(json.dumps(layer.rng_state()))  # a checkpoint keeps it as JSON
    assert state["counter"] == 2 and 0 <= state["key"] < 2**63
    first = _masks(layer, dev, 3)
    again = Dropout(0.5)  # a fresh layer (another seed) continues the saved stream
    again.build(dev, host_rng(123))
    again.set_rng_state(state)
    for a, b in zip(first, _masks(again, dev, 3)):
        np.testing.assert_array_equal(a, b)
    assert again.rng_state() == {"key": state["key"], "counter": 5}


@pytest.mark.parametrize("state", [{"key": 1}, {"key": -1, "counter": 0}, {"key": 2**63, "counter": 0},
                                   {"key": 1, "counter": 1.0}, {"key": 1, "counter": 0, "x": 0}, [1, 0]])
def test_dropout_set_rng_state_refuses_what_rng_state_cannot_give(state):
    with pytest.raises(ValueError, match="Dropout.set_rng_state"):
        Dropout(0.5).set_rng_state(state)


def test_dropout_backward_uses_the_forward_mask(dev):
    x_host = np.random.default_rng(0).normal(size=(20, 10)) + 5.0  # no zeros of its own
    layer = _dropout(0.4, dev)
    layer.build(dev, host_rng(0), "float64")
    x = dev.asarray(x_host, "float64")
    mask = to_numpy(layer.forward(x, training=True)) / x_host  # 0 or 1 / 0.6
    dy_host = np.random.default_rng(1).normal(size=(20, 10))
    dx = layer.backward(dev.asarray(dy_host, "float64"))
    _assert_like(dx, x, "Dropout.backward")
    np.testing.assert_allclose(to_numpy(dx), dy_host * mask, rtol=1e-12)
    assert set(np.round(np.unique(mask), 12)) == {0.0, round(1 / 0.6, 12)}


def test_dropout_backward_after_an_evaluation_forward_is_the_identity(dev):
    """The last forward decides: after a training forward, an evaluation one (validation, predict, an input
    gradient taken in evaluation mode) passes x through, so its backward must pass dy through, not apply
    the training mask that is still around."""
    layer = _dropout(0.5, dev)
    x = dev.asarray(np.ones((8, 16)))
    assert (to_numpy(layer.forward(x, training=True)) == 0).any()  # a mask that zeroes something
    assert layer.forward(x) is x
    dy_host = np.random.default_rng(1).normal(size=(8, 16))
    np.testing.assert_array_equal(to_numpy(layer.backward(dev.asarray(dy_host))), dy_host.astype(np.float32))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, math.nan, True, "0.5", None])
def test_dropout_refuses_a_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"Dropout: p is the probability of zeroing an input and must be a "
                                         r"number with 0 <= p < 1, got"):
        Dropout(p)


def test_dropout_needs_a_stream_before_training():
    x = np.ones((2, 3))
    assert Dropout(0.5).forward(x) is x  # evaluation needs none
    with pytest.raises(RuntimeError, match=r"Dropout: the layer has no random stream yet; build it first"):
        Dropout(0.5).forward(x, training=True)


def test_dropout_takes_its_key_without_moving_the_weights_or_the_shuffling():
    plain = Sequential([Dense(6, 5), ReLU(), Dense(5, 2)], seed=11)
    dropped = Sequential([Dense(6, 5), ReLU(), Dropout(0.3), Dense(5, 2)], seed=11)
    assert plain.state_dict().keys() == {"0.W", "0.b", "2.W", "2.b"}
    for k in ("0.W", "0.b", "2.W", "2.b"):
        np.testing.assert_array_equal(dropped.state_dict()[k.replace("2.", "3.")], plain.state_dict()[k])
    assert dropped.rng.bit_generator.state == plain.rng.bit_generator.state  # the same shuffles follow
    # built to load weights into (init=False), the stream is the one a trained model of that seed had
    loaded = Sequential([Dense(6, 5), ReLU(), Dropout(0.3), Dense(5, 2)], seed=11, init=False)
    assert loaded.layers[2].rng_state() == dropped.layers[2].rng_state()
    two = Sequential([Dropout(0.3), Dense(6, 5), Dropout(0.3)], seed=11)
    assert two.layers[0].rng_state()["key"] != two.layers[2].rng_state()["key"]


# -- BatchNorm1d --------------------------------------------------------------------------------------------
def _bn(dev, dtype="float64", features=4, seed=0, **kwargs):
    """A built BatchNorm1d with random gamma, beta and running statistics (the defaults would hide errors
    of a factor gamma or a missing shift)."""
    layer = BatchNorm1d(features, **kwargs)
    layer.build(dev, host_rng(0), dtype)
    r = np.random.default_rng(seed)
    layer.params["gamma"] = dev.asarray(r.uniform(0.5, 2.0, features), dtype)
    layer.params["beta"] = dev.asarray(r.normal(size=features), dtype)
    layer.buffers["running_mean"] = dev.asarray(r.normal(size=features), dtype)
    layer.buffers["running_var"] = dev.asarray(r.uniform(0.5, 2.0, features), dtype)
    return layer


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_batchnorm_gradients_match_central_differences(dev, training):
    layer = _bn(dev)
    x_host = np.random.default_rng(1).normal(2.0, 3.0, size=(6, 4))
    r = np.random.default_rng(2).normal(size=(6, 4))
    params = {k: to_numpy(v).copy() for k, v in layer.params.items()}
    running = {k: to_numpy(v).copy() for k, v in layer.buffers.items()}

    def objective():
        for k, v in params.items():
            layer.params[k] = dev.asarray(v, "float64")
        for k, v in running.items():  # training moves them; the evaluation objective must not drift
            layer.buffers[k] = dev.asarray(v, "float64")
        return float(np.sum(to_numpy(layer.forward(dev.asarray(x_host, "float64"), training)) * r))

    objective()
    dx = layer.backward(dev.asarray(r, "float64"))
    grads = {k: to_numpy(g) for k, g in layer.grads.items()}
    np.testing.assert_allclose(to_numpy(dx), central_difference(objective, x_host), rtol=1e-6, atol=1e-8)
    for k in params:
        np.testing.assert_allclose(grads[k], central_difference(objective, params[k]), rtol=1e-6, atol=1e-8,
                                   err_msg=f"grads[{k!r}]")


def test_batchnorm_matches_torch(dev):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for BatchNorm1d's semantics")
    layer = _bn(dev, features=5, momentum=0.3, eps=1e-3)
    ref = torch.nn.BatchNorm1d(5, momentum=0.3, eps=1e-3).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(to_numpy(layer.params["gamma"])))
        ref.bias.copy_(torch.from_numpy(to_numpy(layer.params["beta"])))
        ref.running_mean.copy_(torch.from_numpy(to_numpy(layer.buffers["running_mean"])))
        ref.running_var.copy_(torch.from_numpy(to_numpy(layer.buffers["running_var"])))
    rng = np.random.default_rng(3)
    for step in range(4):
        x_host = rng.normal(1.0 + step, 2.0, size=(7, 5))
        dy_host = rng.normal(size=(7, 5))
        xt = torch.tensor(x_host, requires_grad=True)
        ref.zero_grad()
        yt = ref(xt)
        yt.backward(torch.from_numpy(dy_host))
        y = layer.forward(dev.asarray(x_host, "float64"), training=True)
        dx = layer.backward(dev.asarray(dy_host, "float64"))
        close = dict(rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(to_numpy(y), yt.detach().numpy(), **close, err_msg=f"step {step}: y")
        np.testing.assert_allclose(to_numpy(dx), xt.grad.numpy(), **close, err_msg=f"step {step}: dx")
        np.testing.assert_allclose(to_numpy(layer.grads["gamma"]), ref.weight.grad.numpy(), **close)
        np.testing.assert_allclose(to_numpy(layer.grads["beta"]), ref.bias.grad.numpy(), **close)
        np.testing.assert_allclose(to_numpy(layer.buffers["running_mean"]), ref.running_mean.numpy(), **close,
                                   err_msg=f"step {step}: running_mean")
        np.testing.assert_allclose(to_numpy(layer.buffers["running_var"]), ref.running_var.numpy(), **close,
                                   err_msg=f"step {step}: running_var")
    ref.eval()
    x_host = rng.normal(size=(3, 5))
    np.testing.assert_allclose(to_numpy(layer.forward(dev.asarray(x_host, "float64"))),
                               ref(torch.from_numpy(x_host)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_batchnorm_keeps_float32_and_the_device(dev):
    layer = BatchNorm1d(3)
    layer.build(dev, host_rng(0))
    x = dev.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    y = layer.forward(x, training=True)
    _assert_like(y, x, "BatchNorm1d.forward")
    _assert_like(layer.backward(dev.asarray(np.ones((4, 3)))), x, "BatchNorm1d.backward")
    for k, v in {**layer.params, **layer.grads, **layer.buffers}.items():
        _assert_like(v, x[0, ...], k)
    assert layer.param_shapes() == {"gamma": (3,), "beta": (3,)}


def test_batchnorm_evaluation_leaves_the_running_statistics_alone(dev):
    layer = _bn(dev)
    before = {k: to_numpy(v).copy() for k, v in layer.buffers.items()}
    layer.forward(dev.asarray(np.ones((5, 4)), "float64"))
    for k, v in layer.buffers.items():
        np.testing.assert_array_equal(to_numpy(v), before[k])
    layer.forward(dev.asarray(np.random.default_rng(0).normal(size=(5, 4)), "float64"), training=True)
    assert not np.array_equal(to_numpy(layer.buffers["running_mean"]), before["running_mean"])


def test_batchnorm_refuses_what_torch_refuses(dev):
    layer = BatchNorm1d(3)
    layer.build(dev, host_rng(0))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected more than 1 value per channel when training, "
                                         r"got input of shape \(1, 3\).*change batch_size"):
        layer.forward(dev.asarray(np.ones((1, 3))), training=True)
    assert to_numpy(layer.forward(dev.asarray(np.ones((1, 3))))).shape == (1, 3)  # evaluation takes one row
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) expects input of shape \(batch, 3\), got \(4, 3, 2\) "
                                         r"\(BatchNorm1d takes 2-D input only; flatten first\)"):
        layer.forward(dev.asarray(np.ones((4, 3, 2))), training=True)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) expects input of shape \(batch, 3\), got \(4, 2\)$"):
        layer.forward(dev.asarray(np.ones((4, 2))))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_features": 0}, "num_features must be a positive int"),
    ({"num_features": 2.0}, "num_features must be a positive int"),
    ({"num_features": 2, "momentum": 1.5}, r"momentum must be a number in \[0, 1\]"),
    ({"num_features": 2, "momentum": None}, r"momentum must be a number in \[0, 1\]"),
    ({"num_features": 2, "eps": 0.0}, "eps must be a small positive number"),
    ({"num_features": 2, "eps": math.inf}, "eps must be a small positive number"),
])
def test_batchnorm_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match="BatchNorm1d: " + match):
        BatchNorm1d(**kwargs)


# -- buffers in the model --------------------------------------------------------------------------------
def _model(dev=None, seed=0, dtype="float32"):
    return Sequential([Dense(6, 8), BatchNorm1d(8), ReLU(), Dropout(0.25), Dense(8, 3)], device=dev, seed=seed,
                      dtype=dtype)


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    return X, y


def test_buffers_are_state_but_not_parameters():
    model = _model()
    assert list(model.parameters()) == ["0.W", "0.b", "1.gamma", "1.beta", "4.W", "4.b"]
    assert list(model.buffers()) == ["1.running_mean", "1.running_var"]
    assert list(model.state_dict()) == ["0.W", "0.b", "1.gamma", "1.beta", "1.running_mean", "1.running_var",
                                        "4.W", "4.b"]
    np.testing.assert_array_equal(model.state_dict()["1.running_var"], np.ones(8, np.float32))
    lines = []
    model.summary(print_fn=lines.append)
    assert "Trainable params: 99 (396 B)" in lines and "Non-trainable params: 16 (64 B)" in lines[-1]
    # an optimizer gets parameters() and gradients(): the running statistics are in neither
    X, y = _data()
    model.forward(model.device.asarray(X), training=True)
    model.backward(model.device.asarray(np.ones((96, 3))))
    assert set(model.gradients()) == set(model.parameters())


def test_load_state_dict_checks_and_copies_the_buffers(dev):
    model = _model(dev)
    state = model.state_dict()
    state["1.running_mean"] = np.arange(8, dtype=np.float32)
    model.load_state_dict(state)
    np.testing.assert_array_equal(to_numpy(model.buffers()["1.running_mean"]), np.arange(8))
    assert xpnet.device_of(model.buffers()["1.running_mean"]) == dev
    state["1.running_mean"][0] = 99.0  # the model holds a copy of its own
    assert to_numpy(model.buffers()["1.running_mean"])[0] == 0.0
    missing = {k: v for k, v in state.items() if k != "1.running_var"}
    with pytest.raises(ValueError, match=r"missing keys \['1.running_var'\]"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"1.running_var has shape \(3,\), the model expects \(8,\)"):
        model.load_state_dict({**state, "1.running_var": np.ones(3, np.float32)})


@pytest.mark.parametrize("model_dtype, state_dtype", [("float32", "float64"), ("float64", "float32")])
def test_load_state_dict_casts_to_the_models_dtype(dev, model_dtype, state_dtype):
    """A state of the other dtype, as host arrays (state_dict) or as another model's device arrays, is cast:
    the parameters, the buffers and predict's outputs keep the model's dtype, and so does training after it.
    (Kept float64 in a float32 model, NumPy would compute everything in float64 without a word.)"""
    X, y = _data(32)
    other = _model(dev, seed=1, dtype=state_dtype)
    other.fit(X, y, loss="softmax_cross_entropy", epochs=1, batch_size=16, verbose=0)  # buffers off their init
    want = other.state_dict()
    for source in (other.state_dict(), {**other.parameters(), **other.buffers()}):
        model = _model(dev, dtype=model_dtype)
        model.load_state_dict(source)
        for k, v in {**model.parameters(), **model.buffers()}.items():
            assert v.dtype == dev.dtype(model_dtype), f"{k} is {v.dtype} in a {model_dtype} model"
            np.testing.assert_array_equal(to_numpy(v), want[k].astype(model_dtype), err_msg=k)
        assert model.predict(X).dtype == dev.dtype(model_dtype)
        model.fit(X, y, loss="softmax_cross_entropy", epochs=1, batch_size=16, verbose=0)
        assert all(v.dtype == dev.dtype(model_dtype) for v in {**model.parameters(), **model.buffers()}.values())


def test_to_moves_the_buffers(dev):
    model = _model()
    X, y = _data()
    model.forward(model.device.asarray(X), training=True)
    before = model.state_dict()
    model.to(dev)
    for name, v in {**model.parameters(), **model.buffers()}.items():
        assert xpnet.device_of(v) == dev, name
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def _same_kernels(a, b) -> bool:
    """Whether two devices compute with the same library's kernels (array-api-strict runs NumPy's): only then
    must the same arithmetic give the same bits. torch's CPU matmul and NumPy's OpenBLAS round the last bit
    of a float64 sum differently (4.4e-16 apart, measured with torch 2.13)."""
    on_numpy = {"numpy", "array-api-strict"}
    return a.kind == b.kind and (a.backend == b.backend or {a.backend, b.backend} <= on_numpy)


def test_save_and_load_keep_the_buffers_bit_for_bit(dev, tmp_path):
    """The stored arrays come back bit for bit on any device (no arithmetic touches them); predict's outputs
    too where the same kernels compute them, and within float64 rounding (rtol 1e-12) on another library's."""
    X, y = _data()
    model = _model(dev, dtype="float64")
    model.fit(X, y, loss="softmax_cross_entropy", optimizer="adam", epochs=2, batch_size=16, verbose=0)
    assert not np.array_equal(model.state_dict()["1.running_var"], np.ones(8))  # training moved them
    model.save(tmp_path / "m.npz")
    for where in (dev, xpnet.device("cpu")):
        loaded = xpnet.load(tmp_path / "m.npz", device=where)
        assert list(loaded.buffers()) == ["1.running_mean", "1.running_var"]
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)
            assert loaded.state_dict()[k].dtype == v.dtype
        got, want = to_numpy(loaded.predict(X)), to_numpy(model.predict(X))
        if _same_kernels(where, dev):
            np.testing.assert_array_equal(got, want, err_msg=f"predict on {where}")
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"predict on {where}")


def test_a_loaded_model_goes_on_drawing_the_saved_models_masks(dev, tmp_path):
    """The file keeps where each Dropout's stream has got to, so training goes on as if never saved."""
    X, y = _data()
    kwargs = dict(loss="softmax_cross_entropy", batch_size=16, shuffle=False, verbose=0)
    model = _model(dev, seed=2)
    model.fit(X, y, optimizer="adam", epochs=1, **kwargs)
    model.save(tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz", device=dev)
    assert loaded.layers[3].rng_state() == model.layers[3].rng_state() == {
        "key": model.layers[3].rng_state()["key"], "counter": 6}
    for m in (model, loaded):
        m.fit(X, y, optimizer=xpnet.SGD(0.05), epochs=1, **kwargs)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("streams, match", [
    ([1, 2], "layer_rng is not a dict"),
    ({"0": {"key": 1, "counter": 0}}, "layer_rng names layer '0', which draws no random numbers"),
    ({"9": {"key": 1, "counter": 0}}, "layer_rng names layer '9', which draws no random numbers"),
    ({"x": {"key": 1, "counter": 0}}, "layer_rng names layer 'x', which draws no random numbers"),
    ({"3": {"key": -1, "counter": 0}}, r"the random state of layer 3: Dropout.set_rng_state: key must be"),
    ({"3": "state"}, r"the random state of layer 3: Dropout.set_rng_state: expected a dict"),
])
def test_a_garbled_random_state_in_the_file_is_a_format_error(tmp_path, streams, match):
    _model().save(tmp_path / "m.npz")
    header, arrays = xpnet.io.read(tmp_path / "m.npz")
    header["layer_rng"] = streams
    xpnet.io.write(tmp_path / "bad.npz", {k: v for k, v in header.items() if k != "parameters"}, arrays)
    with pytest.raises(xpnet.ModelFormatError, match=r"bad.npz: garbled xpnet header \(" + match):
        xpnet.load(tmp_path / "bad.npz")


def test_a_file_without_the_buffers_of_its_batchnorm_is_refused(tmp_path):
    model = _model()
    model.save(tmp_path / "m.npz")
    header, arrays = xpnet.io.read(tmp_path / "m.npz")
    del arrays["1.running_var"]
    xpnet.io.write(tmp_path / "cut.npz", {k: v for k, v in header.items() if k != "parameters"}, arrays)
    with pytest.raises(xpnet.ModelFormatError, match=r"the architecture has parameters and buffers .*"
                                                     r"'1.running_var'.* but the file holds arrays"):
        xpnet.load(tmp_path / "cut.npz")


# -- training ---------------------------------------------------------------------------------------------
def test_validation_during_fit_runs_in_evaluation_mode(dev):
    """evaluate() inside fit must neither update the running statistics nor draw dropout masks."""
    X, y = _data()
    runs = []
    for validation in (None, _data(40, seed=1)):
        model = _model(dev)
        model.fit(X, y, loss="softmax_cross_entropy", optimizer="sgd", lr=0.1, epochs=2, batch_size=32,
                  validation_data=validation, verbose=0)
        runs.append(model)
    plain, validated = runs
    for k, v in plain.state_dict().items():
        np.testing.assert_array_equal(validated.state_dict()[k], v, err_msg=k)
    assert validated.layers[3].rng_state() == plain.layers[3].rng_state() == {
        "key": plain.layers[3].rng_state()["key"], "counter": 2 * 3}


@pytest.mark.parametrize("backend", ["numpy", "array-api-strict"])
def test_a_small_model_with_dropout_and_batchnorm_trains(backend):
    if backend != "numpy":
        pytest.importorskip("array_api_strict")
    X, y = _data(200)
    model = Sequential([Dense(6, 32), BatchNorm1d(32), ReLU(), Dropout(0.2), Dense(32, 3)],
                       device="cpu", backend=backend, seed=0)
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=xpnet.Adam(0.01), epochs=15, batch_size=20,
                        verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0], losses
    # evaluation is deterministic: no masks, fixed statistics
    first, second = to_numpy(model.predict(X)), to_numpy(model.predict(X))
    np.testing.assert_array_equal(first, second)
    assert model.evaluate(X, y) == model.evaluate(X, y)
    assert model.evaluate(X, y)["accuracy"] > 0.85
    for v in {**model.parameters(), **model.buffers()}.values():
        assert v.dtype == model.device.dtype("float32")
