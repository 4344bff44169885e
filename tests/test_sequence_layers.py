"""The sequence layers (Embedding, PositionalEmbedding, LayerNorm, GELU) and Dense on (batch, T, in), on every
backend: values and float64 gradients against PyTorch autograd with the same weights (within 1e-10 of the
largest value), float32 forward passes within 1e-6, Embedding's gradient against central differences, its
scatter-add fast paths against the generic lines, integer ids through fit/predict/summary, save and load,
and operations per step that do not grow with the batch or T. (The float-input layers also go through the
harness of tests/test_layers.py: central differences, shapes, devices.)
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import GELU, Dense, Embedding, Flatten, LayerNorm, PositionalEmbedding, Sequential, init, to_numpy
from xpnet.backend import host_rng
from xpnet.layers import sequence

from numpy_reference import central_difference

torch = pytest.importorskip("torch")
F = torch.nn.functional

B, T, DIM, V = 3, 5, 8, 11  # awkward sizes: no two alike, none a power of two


def _ids(shape=(B, T), seed=0, vocab=V):
    ids = np.random.default_rng(seed).integers(0, vocab, size=shape)
    ids.flat[:4] = [3, 3, 7, 3]  # repeated ids: the rows of W that several positions add into
    return ids


def _floats(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


# id -> (layer, input maker, torch's forward(x, params))
CASES = {
    "Embedding": (lambda: Embedding(V, DIM), lambda: _ids(), lambda x, p: F.embedding(x, p["W"])),
    "PositionalEmbedding": (lambda: PositionalEmbedding(7, DIM), lambda: _floats((B, T, DIM)),
                            lambda x, p: x + p["W"][:T]),
    "LayerNorm": (lambda: LayerNorm(DIM), lambda: 3.0 + 2.0 * _floats((B, T, DIM)),
                  lambda x, p: F.layer_norm(x, (DIM,), p["gamma"], p["beta"], 1e-5)),
    "LayerNorm-eps": (lambda: LayerNorm(DIM, eps=0.5), lambda: _floats((B, T, DIM)),
                      lambda x, p: F.layer_norm(x, (DIM,), p["gamma"], p["beta"], 0.5)),
    "GELU": (GELU, lambda: 3.0 * _floats((B, T, DIM)), lambda x, p: F.gelu(x, approximate="tanh")),
    "Dense-3d": (lambda: Dense(DIM, 6), lambda: _floats((B, T, DIM)), lambda x, p: F.linear(x, p["W"].T, p["b"])),
    "Dense-4d-no-bias": (lambda: Dense(DIM, 6, bias=False), lambda: _floats((2, B, T, DIM)),
                         lambda x, p: F.linear(x, p["W"].T)),
}


def _built(case, dev, dtype):
    """The case's layer on ``dev`` with every weight drawn at random (so gamma = 1 and beta = 0 hide nothing)."""
    layer = CASES[case][0]()
    layer.build(dev, host_rng(0), dtype)
    rng = np.random.default_rng(1)
    host = {k: rng.normal(size=tuple(v.shape)) + (1.0 if k == "gamma" else 0.0) for k, v in layer.params.items()}
    for k, v in host.items():
        layer.params[k] = dev.asarray(v, dtype)
    return layer, host


def _torch(case, x, host, dtype):
    """PyTorch's output, and its gradients of sum(y * r) w.r.t. the input (floats only) and the weights."""
    tdt = getattr(torch, dtype)
    params = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in host.items()}
    xt = torch.tensor(x) if x.dtype.kind == "i" else torch.tensor(x, dtype=tdt, requires_grad=True)
    y = CASES[case][2](xt, params)
    return xt, y, params


def assert_relative(got, want, tol, what):
    """Within ``tol`` of the largest value of ``want``: the error relative to the array's size."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, torch's {want.shape}"
    err = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-300)
    assert err <= tol, f"{what}: {err:.2e} of the largest value from torch's (tolerance {tol:g})"


@pytest.mark.parametrize("case", CASES)
def test_float64_gradients_equal_torch_autograd(case, dev):
    layer, host = _built(case, dev, "float64")
    x = CASES[case][1]()
    y = layer.forward(dev.asarray(x, None if x.dtype.kind == "i" else "float64"), training=True)
    r = np.random.default_rng(2).normal(size=tuple(y.shape))
    dx = layer.backward(dev.asarray(r, "float64"))
    xt, yt, params = _torch(case, x, host, "float64")
    (yt * torch.tensor(r)).sum().backward()
    assert_relative(to_numpy(y), yt.detach().numpy(), 1e-12, f"{case} forward")
    if xt.requires_grad:
        assert_relative(to_numpy(dx), xt.grad.numpy(), 1e-10, f"{case} dx")
    else:
        assert dx is None  # integer ids have no gradient
    assert set(layer.grads) == set(params)
    for k, p in params.items():
        assert layer.grads[k].dtype == layer.params[k].dtype
        assert_relative(to_numpy(layer.grads[k]), p.grad.numpy(), 1e-10, f"{case} grads[{k!r}]")


@pytest.mark.parametrize("case", CASES)
def test_float32_forward_equals_torch(case, dev):
    layer, host = _built(case, dev, "float32")
    x = CASES[case][1]()
    y = layer.forward(dev.asarray(x, None if x.dtype.kind == "i" else "float32"))
    assert y.dtype == dev.dtype("float32")
    assert_relative(to_numpy(y), _torch(case, x, host, "float32")[1].detach().numpy(), 1e-6, f"{case} forward")


def test_embedding_gradient_equals_central_differences(dev):
    layer, host = _built("Embedding", dev, "float64")
    ids = dev.asarray(_ids(), None)
    r = np.random.default_rng(2).normal(size=(B, T, DIM))

    def objective():
        layer.params["W"] = dev.asarray(host["W"], "float64")
        return float(np.sum(to_numpy(layer.forward(ids)) * r))

    objective()
    layer.backward(dev.asarray(r, "float64"))
    np.testing.assert_allclose(to_numpy(layer.grads["W"]), central_difference(objective, host["W"]),
                               rtol=1e-6, atol=1e-8)


# -- the scatter-add: each backend's own against the generic lines -------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_add_fast_paths_equal_the_generic_lines(dev, dtype):
    """Repeated ids add up (``out[ids] += v`` would keep one of them); rows no id names stay 0."""
    rng = np.random.default_rng(3)
    for rows, n, dim in [(1, 1, 1), (V, 15, DIM), (65, 768, 16), (2000, 300, 3)]:
        ids = rng.integers(0, rows, size=n)
        ids[: n // 2] = ids[0]  # half of them one id
        values = rng.normal(size=(n, dim))
        want = np.zeros((rows, dim))
        for i, row in enumerate(ids):  # the definition, one row at a time
            want[row] += values[i]
        dids, dvalues = dev.asarray(ids, "int64"), dev.asarray(values, dtype)
        for name, fn in (("backend", sequence.scatter_add), ("generic", sequence.one_hot_scatter_add)):
            got = fn(dids, dvalues, rows)
            assert got.dtype == dvalues.dtype and tuple(got.shape) == (rows, dim)
            np.testing.assert_allclose(to_numpy(got), want, rtol=1e-5 if dtype == "float32" else 1e-12,
                                       atol=1e-5 if dtype == "float32" else 1e-12, err_msg=f"{name} {rows}x{dim}")


def test_which_backends_have_their_own_scatter_add(dev):
    found = xpnet.backend.routine(dev.xp, "scatter_add")
    assert (found is not None) == (dev.backend in ("numpy", "torch", "jax", "cupy"))


# -- integer ids through the model: fit, predict, evaluate, summary ---------------------------------------
def _classifier(dev, **kw):
    return Sequential([Embedding(V, 4), Flatten(), Dense(T * 4, 3)], device=dev, seed=0, **kw)


def test_fit_keeps_the_ids_integers_and_trains(dev, recwarn):
    X = _ids((60, T), seed=4)
    y = (X[:, 0] > V // 2).astype(np.int64) + (X[:, 1] > V // 2)
    model = _classifier(dev)
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=xpnet.Adam(0.05), epochs=8, batch_size=16,
                        verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert not [str(w.message) for w in recwarn.list if "raw pixels" in str(w.message)]  # ids are no pixels
    assert model.evaluate(X, y)["accuracy"] > 0.8
    assert tuple(model.predict(X[:7]).shape) == (7, 3)


def test_ids_unseen_in_training_are_no_unscaled_inputs(dev, recwarn):
    """The range check that warns about unscaled floats (trained on 0..1, given 0..255) has nothing to say about
    ids: a model trained on ids 0..3 may be given id 10, which its table has a row for."""
    model = _classifier(dev)
    model.fit(_ids((8, T)) % 4, np.zeros(8, np.int64), loss="softmax_cross_entropy", verbose=0)
    assert model.input_range == (0.0, 3.0)
    model.predict(np.full((2, T), V - 1))
    assert not [str(w.message) for w in recwarn.list if "trained on inputs" in str(w.message)]


def test_ids_the_table_has_no_row_for_are_refused_before_training(dev):
    model = _classifier(dev)
    before = model.state_dict()
    X = _ids((8, T))
    for bad, low, high in [(V, 0, V), (-1, -1, V - 1)]:
        X[2, 3] = bad
        X[5, 1] = V - 1
        with pytest.raises(ValueError) as err:
            model.fit(X, np.zeros(8, np.int64), loss="softmax_cross_entropy", verbose=0)
        assert str(err.value) == (
            f"fit: Embedding(num_embeddings={V}, dim=4, init='normal(std=0.02)') takes ids from 0 to {V - 1}, got "
            f"ids from {low} to {high}; encode the tokens with the vocabulary the model was made for, or make the "
            f"Embedding with num_embeddings >= {high + 1}")
        with pytest.raises(ValueError, match=rf"^predict: Embedding\(.*\) takes ids from 0 to {V - 1}, got ids"):
            model.predict(X)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_floats_for_an_embedding_are_refused(dev):
    model = _classifier(dev)
    with pytest.raises(TypeError, match=r"^fit: X has dtype float32, but the first layer Embedding\(num_embeddings="
                                        r"11, .*\) takes integer ids; pass them as integers: X.astype\(np.int64\)$"):
        model.fit(_ids((4, T)).astype(np.float32), np.zeros(4, np.int64), loss="softmax_cross_entropy")
    layer = model.layers[0]
    with pytest.raises(TypeError, match=r"^Embedding\(.*\) takes integer token ids, got float64; pass them as int64"):
        layer.forward(dev.asarray(np.zeros((2, T)), "float64"))


def test_an_embedding_model_backpropagates_to_its_weights_only(dev):
    model = Sequential([Embedding(V, DIM), PositionalEmbedding(T, DIM), LayerNorm(DIM), Dense(DIM, 6), GELU()],
                       device=dev, seed=0)
    out = model.forward(dev.asarray(_ids(), "int64"), training=True)
    assert model.backward(dev.asarray(np.ones(tuple(out.shape)), "float32")) is None
    assert set(model.gradients()) == {"0.W", "1.W", "2.gamma", "2.beta", "3.W", "3.b"}


def test_summary_of_a_model_that_takes_ids():
    model = Sequential([Embedding(65, 8), PositionalEmbedding(64, 8), LayerNorm(8), Dense(8, 32), GELU()], seed=0)
    lines = []
    model.summary(input_shape=(64,), print_fn=lines.append)
    assert lines[1] == "Input shape: (None, 64), int64 ids"
    assert [line.split()[2:5] for line in lines[5:10]] == [
        ["(None,", "64,", "8)"], ["(None,", "64,", "8)"], ["(None,", "64,", "8)"], ["(None,", "64,", "32)"],
        ["(None,", "64,", "32)"]]
    with pytest.raises(ValueError, match=r"got 80 positions \(input of shape \(None, 80, 8\)\), more than its "
                                         r"max_len=64; cut the windows to at most 64, or make the layer with "
                                         r"max_len >= 80"):
        model.summary(input_shape=(80,))


# -- the layers' own refusals ----------------------------------------------------------------------------
def test_positional_embedding_refuses_a_longer_window(dev):
    layer = PositionalEmbedding(4, DIM)
    layer.build(dev, host_rng(0))
    with pytest.raises(ValueError, match=r"^PositionalEmbedding\(max_len=4, dim=8, init='normal\(std=0.02\)'\) got 5 "
                                         r"positions \(input of shape \(3, 5, 8\)\), more than its max_len=4"):
        layer.forward(dev.asarray(np.zeros((B, T, DIM))))
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, T, 8\), got \(3, 8\)$"):
        layer.forward(dev.asarray(np.zeros((B, DIM))))
    assert tuple(layer.forward(dev.asarray(np.zeros((B, 4, DIM)))).shape) == (B, 4, DIM)  # T = max_len


def test_gelu_offers_the_tanh_form_only():
    with pytest.raises(ValueError, match=r"^GELU: approximate='none' is not offered, only approximate='tanh': 0.5 x "
                                         r"\(1 \+ tanh\(sqrt\(2/pi\) \(x \+ 0.044715 x\^3\)\)\), as "
                                         r"torch.nn.GELU\(approximate='tanh'\) and GPT-2. The exact x Phi\(x\) needs "
                                         r"erf, which the Array API standard lacks; the tanh form is within 4.7e-4"):
        GELU(approximate="none")
    x = torch.linspace(-10, 10, 200001, dtype=torch.float64)
    gap = float((F.gelu(x) - F.gelu(x, approximate="tanh")).abs().max())
    assert 4.6e-4 < gap < 4.8e-4  # what the message and the docstring say


@pytest.mark.parametrize("make, message", [
    (lambda: Embedding(0, 4), "Embedding: num_embeddings must be a positive int, got 0"),
    (lambda: Embedding(5, 2.0), "Embedding: dim must be a positive int, got 2.0"),
    (lambda: PositionalEmbedding(-1, 4), "PositionalEmbedding: max_len must be a positive int, got -1"),
    (lambda: LayerNorm(4, eps=0), "LayerNorm: eps must be a small positive number (default 1e-5), got 0"),
    (lambda: LayerNorm(True), "LayerNorm: dim must be a positive int (the width of the layer before it), got True"),
    (lambda: Embedding(5, 4, init="normal(std=-1)"), "unknown initializer 'normal(std=-1)'"),
])
def test_constructors_refuse(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value).startswith(message)


# -- weights: the same on every backend, saved and loaded ------------------------------------------------
def _stack():
    return [Embedding(V, DIM), PositionalEmbedding(T, DIM), LayerNorm(DIM), Dense(DIM, 16, init=init.normal(0.02)),
            GELU(), Dense(16, V, init="normal(std=0.0025)", bias=False)]


def test_one_seed_gives_the_same_weights_on_every_backend(dev):
    want = Sequential(_stack(), device="cpu", seed=7).state_dict()
    got = Sequential(_stack(), device=dev, seed=7).state_dict()
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert np.std(want["0.W"]) == pytest.approx(0.02, rel=0.2) and np.std(want["5.W"]) == pytest.approx(0.0025,
                                                                                                         rel=0.2)


def test_save_and_load_keep_the_layers_and_the_initializers(tmp_path):
    model = Sequential(_stack(), seed=3)
    ids = _ids()
    path = tmp_path / "seq.npz"
    model.save(path)
    again = xpnet.load(path)
    assert again.get_config() == model.get_config()
    assert again.layers[3].init == "normal(std=0.02)" and again.layers[5].init == "normal(std=0.0025)"
    np.testing.assert_array_equal(to_numpy(again.predict(ids)), to_numpy(model.predict(ids)))
    fresh = [type(layer).from_config(layer.get_config()) for layer in again.layers]
    assert Sequential(fresh, seed=3).state_dict().keys() == model.state_dict().keys()
    for k, v in Sequential(fresh, seed=3).state_dict().items():  # the initializers drew the same again
        np.testing.assert_array_equal(v, model.state_dict()[k], err_msg=k)


def test_the_normal_initializer_by_name():
    draw = init.get("normal(std=0.125)")
    assert draw.__name__ == "normal(std=0.125)" and init.normal(0.125).__name__ == draw.__name__
    got = draw((400, 300), host_rng(0), xpnet.device("cpu"), "float64")
    np.testing.assert_array_equal(got, host_rng(0).normal(0.0, 0.125, size=(400, 300)))
    for bad in (0, -0.1, float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="init.normal: std must be a positive finite number"):
            init.normal(bad)
    assert not init.is_known("normal(std=x)") and init.is_known("normal(std=1e-3)")


# -- operations per step ---------------------------------------------------------------------------------
def _tally(make, shape, ints):
    import opcount

    dev = xpnet.device("cpu", backend="array-api-strict")
    layer = make()
    layer.build(dev, host_rng(0))
    x = dev.asarray(_ids(shape), "int64") if ints else dev.asarray(_floats(shape), "float32")
    dy = dev.asarray(_floats(tuple(layer.forward(x, training=True).shape)), "float32")
    layer.backward(dy)  # a warm-up, as fit's first step
    with opcount.counting() as tally:
        layer.forward(x, training=True)
        layer.backward(dy)
    return tally


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("LayerNorm-")])
def test_operations_do_not_grow_with_the_batch_or_the_sequence(case):
    pytest.importorskip("array_api_strict")
    ints = case == "Embedding"
    sizes = [(2, 3), (9, 6)] if ints else [(2, 3, DIM), (9, 6, DIM)]
    if case == "Dense-4d-no-bias":
        sizes = [(1, *s) for s in sizes]
    small, large = (_tally(CASES[case][0], s, ints) for s in sizes)
    assert small.syncs == [] and large.syncs == [], f"{case}: a host sync in forward or backward"
    assert large.total == small.total, f"{case}: {dict(small.ops)} at {sizes[0]}, {dict(large.ops)} at {sizes[1]}"


@pytest.mark.gpu
def test_cupy_scatter_add_equals_the_generic_lines():
    dev = xpnet.device("cuda")
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 50, size=700)
    ids[:300] = 7
    values = dev.asarray(rng.normal(size=(700, 16)), "float64")
    fast = sequence.scatter_add(dev.asarray(ids, "int64"), values, 50)
    slow = sequence.one_hot_scatter_add(dev.asarray(ids, "int64"), values, 50)
    np.testing.assert_allclose(to_numpy(fast), to_numpy(slow), rtol=1e-12, atol=1e-12)
