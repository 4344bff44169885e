"""A model's parameters as views of one flat buffer per dtype, which the optimizer steps at once (issue 25).

Where the array library makes views (NumPy, CuPy, PyTorch, array-api-strict) each layer's ``params[k]``
is a reshaped slice of the model's flat array; JAX (no views) keeps separate arrays, stepped one by one.
Pinned here: whatever writes the parameters keeps them views of the buffer the optimizer steps (the
``parameters()`` mapping, ``load_state_dict``, a copy of the model, ``model.to``, a layer that stores a
new array); the all-reduced gradient is stepped as it is; a checkpoint written before the flat buffers
resumes bit for bit; weight decay on the matrices only is PyTorch's two parameter groups. The flat
step's bits against the per-parameter step's are in ``test_optim_contracts.py``.
"""

from __future__ import annotations

import copy
import pathlib
import pickle

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Adam, AdamW, Dense, ReLU, RMSprop, Sequential, inplace, to_numpy

DATA = pathlib.Path(__file__).parent / "data"


def _mlp(dev, seed=0, dtype="float32"):
    return Sequential([Dense(4, 3), ReLU(), Dense(3, 2)], device=dev, seed=seed, dtype=dtype)


def _views(model):
    """The model's one flat group, or None (and a check that this library has no views) on JAX."""
    params = model.parameters()
    if not inplace.is_writeable_array(params["0.W"]):
        assert params.flat is None  # JAX: parameter by parameter
        return None
    [group] = params.flat.groups
    assert group.names == list(params) and group.size == sum(int(np.prod(v.shape)) for v in params.values())
    return group


def _assert_views(model, group):
    """Every layer holds its parameter's view, and the views are the buffer's memory: doubling the buffer
    doubles what the layers compute with."""
    params = model.parameters()
    assert all(params[k] is v for k, v in zip(group.names, group.views))
    before = {k: to_numpy(v).copy() for k, v in params.items()}
    group.data *= 2.0
    for i, layer in enumerate(model.layers):
        for k, v in layer.params.items():
            np.testing.assert_array_equal(to_numpy(v), 2 * before[f"{i}.{k}"], err_msg=f"{i}.{k}")
    group.data *= 0.5


def _batch(dev, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return dev.asarray(rng.normal(size=(n, 4)), "float32"), dev.asarray(rng.integers(0, 2, n), "int64")


def _backward(model, X, y):
    loss = xpnet.SoftmaxCrossEntropy()
    loss.forward(model.forward(X, training=True), y)
    model.backward(loss.backward())


def test_the_parameters_are_views_of_one_flat_buffer(dev):
    model = _mlp(dev)
    group = _views(model)
    if group is None:
        return
    _assert_views(model, group)
    # stored through the mapping, an array's values go into the view: the layer keeps the view
    params = model.parameters()
    params["0.W"] = dev.asarray(np.full((4, 3), 0.5), "float32")
    assert model.layers[0].params["W"] is group.views[0]
    np.testing.assert_array_equal(to_numpy(group.data)[:12], np.full(12, 0.5, np.float32))
    with pytest.raises(ValueError, match=r"^parameters\(\)\['0.b'\] = an array of shape \(4,\) and dtype .*: the "
                                         r"parameter is \(3,\) .*; give an array of that shape and dtype"):
        params["0.b"] = dev.asarray(np.zeros(4), "float32")


def test_load_state_dict_writes_into_the_views_that_the_optimizer_steps(dev):
    model, other = _mlp(dev, seed=0), _mlp(dev, seed=1)
    group = _views(model)
    model.load_state_dict(other.state_dict())
    if group is not None:
        np.testing.assert_array_equal(to_numpy(group.data),
                                      np.concatenate([v.ravel() for v in other.state_dict().values()]))
        _assert_views(model, group)
    # one SGD step over the buffer moves the weights forward computes with
    X, y = _batch(dev)
    _backward(model, X, y)
    expected = {k: to_numpy(p) - 0.5 * to_numpy(model.gradients()[k]) for k, p in model.parameters().items()}
    SGD(0.5).step(model.parameters(), model.gradients())
    stepped = _mlp(dev, seed=2)
    stepped.load_state_dict(expected)
    np.testing.assert_array_equal(to_numpy(model.forward(X)), to_numpy(stepped.forward(X)))


def test_a_parameter_rebound_in_its_layer_is_written_back_into_the_buffer(dev):
    """A layer (or a user) that stores a new array in its own dict, past the model's mapping: the next step
    puts its values into the buffer, steps them, and gives the layer its view back."""
    model = _mlp(dev)
    group = _views(model)
    X, y = _batch(dev)
    _backward(model, X, y)
    new = np.full((4, 3), 0.25, np.float32)
    model.layers[0].params["W"] = dev.asarray(new.copy(), "float32")  # (NumPy: asarray would give new itself)
    SGD(0.5).step(model.parameters(), model.gradients())
    np.testing.assert_array_equal(to_numpy(model.layers[0].params["W"]),
                                  new - 0.5 * to_numpy(model.gradients()["0.W"]))
    if group is not None:
        assert model.layers[0].params["W"] is group.views[0]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_of_a_model_has_views_of_its_own_buffer(dev, how):
    """What Threads' ranks (deepcopy) and a saved estimator (pickle) get: the same values, in views of a
    buffer of the copy's own, which its optimizer steps."""
    model = _mlp(dev)
    copied = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    assert {k: to_numpy(v).tolist() for k, v in copied.parameters().items()} == \
        {k: to_numpy(v).tolist() for k, v in model.parameters().items()}
    group = _views(copied)
    if group is not None:
        _assert_views(copied, group)
        group.data *= 0.0
        assert np.any(to_numpy(model.parameters()["0.W"]))  # the original's buffer is another one


def test_a_model_moved_to_another_device_has_views_there(dev):
    model = _mlp("cpu").to(dev)
    group = _views(model)
    if group is not None:
        assert xpnet.device_of(group.data) == dev
        _assert_views(model, group)
    X, y = _batch(dev)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=AdamW(0.1), epochs=2, batch_size=5, verbose=0)
    assert all(xpnet.device_of(v) == dev for v in model.parameters().values())


def test_the_optimizer_steps_the_all_reduced_gradient_as_it_is(dev):
    """The data-parallel all-reduce sums the flat gradient (weighted by the rank's rows) and hands it back:
    the gradients become views of the sum, and the optimizer's flat gradient is the sum itself, until the
    next backward gives the layers new arrays (then a new concat)."""
    model = _mlp(dev)
    flat = model.parameters().flat
    if flat is None:
        return
    X, y = _batch(dev)
    _backward(model, X, y)
    grads = model.gradients()
    each = {k: to_numpy(v).copy() for k, v in grads.items()}
    [weighted] = flat.weighted_gradients(grads, 0.25)
    np.testing.assert_array_equal(to_numpy(weighted), 0.25 * np.concatenate([g.ravel() for g in each.values()]))
    assert not np.any(to_numpy(flat.weighted_gradients(grads, 0.0)[0]))  # an empty shard: zeros
    summed = weighted * 3.0  # what the other ranks add
    flat.set_gradients(grads, [summed])
    assert flat.gradients(grads)[0] is summed
    np.testing.assert_array_equal(to_numpy(grads["2.W"]), 0.75 * each["2.W"])
    _backward(model, X, y)
    again = flat.gradients(model.gradients())[0]
    assert again is not summed
    np.testing.assert_array_equal(to_numpy(again), np.concatenate([g.ravel() for g in each.values()]))


@pytest.mark.parametrize("backend_name", ["numpy", "array-api-strict"])
def test_a_checkpoint_written_before_the_flat_buffers_resumes_exactly(backend_name):
    """tests/data/adamw_checkpoint_before_flat_buffers.npz: epoch 1 of 2 of this run, written by xpnet
    8940cd4 (parameters and Adam's state one array each, stepped one by one). Resumed, the second epoch
    ends where a run of both epochs today ends, bit for bit: on NumPy (views of the flat buffer, stepped
    array by array) and on array-api-strict (the flat buffer stepped at once, as on a GPU).

    Made by: ``Sequential([Dense(4, 6), ReLU(), Dense(6, 3)], seed=0).fit(X, y, loss="softmax_cross_entropy",
    optimizer=AdamW(0.01, weight_decay=0.1), epochs=1, batch_size=6, checkpoint_dir=...)`` on the data below.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=20)

    pytest.importorskip(backend_name.replace("-", "_"))
    dev = xpnet.device("cpu", backend=backend_name)

    def run(**kwargs):
        model = Sequential([Dense(4, 6), ReLU(), Dense(6, 3)], device=dev, seed=0)
        opt = AdamW(0.01, weight_decay=0.1)
        model.fit(X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=2, batch_size=6, verbose=0, **kwargs)
        return model, opt

    old = DATA / "adamw_checkpoint_before_flat_buffers.npz"
    resumed, resumed_opt = run(resume_from=old)
    whole, whole_opt = run()
    assert resumed.parameters().flat is not None and resumed_opt.t == whole_opt.t == 8
    assert (resumed_opt._flat is not None) == (backend_name == "array-api-strict")  # stepped at once
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    mine, theirs = resumed_opt.state_dict()["state"], whole_opt.state_dict()["state"]
    assert sorted(mine) == sorted(theirs) and "exp_avg/0.W" in mine
    for k, v in theirs.items():
        np.testing.assert_array_equal(mine[k], v, err_msg=k)


# -- weight decay on the matrices only: nanoGPT's two parameter groups ------------------------------------
TORCH_GROUPS = {  # xpnet optimizer, torch.optim class and its arguments (weight decay set per group)
    "adamw": (lambda on: AdamW(0.05, weight_decay=0.2, weight_decay_on=on), "AdamW", {"lr": 0.05}),
    "adam": (lambda on: Adam(0.05, weight_decay=0.2, weight_decay_on=on), "Adam", {"lr": 0.05}),
    "sgd": (lambda on: SGD(0.1, momentum=0.9, weight_decay=0.2, weight_decay_on=on), "SGD",
            {"lr": 0.1, "momentum": 0.9}),
    "rmsprop": (lambda on: RMSprop(0.01, weight_decay=0.2, weight_decay_on=on), "RMSprop", {"lr": 0.01}),
}


@pytest.mark.parametrize("name", list(TORCH_GROUPS))
def test_weight_decay_on_matrices_equals_torch_with_two_parameter_groups(dev, name):
    """nanoGPT's configure_optimizers: weight decay for the parameters with 2 or more axes, none for the
    biases. Ten float64 steps, on the model's flat buffer and on a plain dict (array by array), equal
    torch.optim's with two parameter groups to 1e-12."""
    torch = pytest.importorskip("torch", reason="torch.optim's parameter groups are the reference")
    make, cls, kwargs = TORCH_GROUPS[name]
    model = _mlp(dev, dtype="float64")
    flat = model.parameters()
    plain = {k: dev.asarray(to_numpy(v).copy(), "float64") for k, v in flat.items()}
    tensors = {k: torch.tensor(to_numpy(v).copy(), requires_grad=True) for k, v in flat.items()}
    groups = [{"params": [t for t in tensors.values() if t.ndim >= 2], "weight_decay": 0.2},
              {"params": [t for t in tensors.values() if t.ndim < 2], "weight_decay": 0.0}]
    reference = getattr(torch.optim, cls)(groups, **kwargs)
    mine, theirs = make("matrices"), make("matrices")
    rng = np.random.default_rng(1)
    for _ in range(10):
        grads = {k: rng.normal(size=tuple(v.shape)) for k, v in tensors.items()}
        mine.step(flat, {k: dev.asarray(g, "float64") for k, g in grads.items()})
        theirs.step(plain, {k: dev.asarray(g, "float64") for k, g in grads.items()})
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        reference.step()
    for k, t in tensors.items():
        want = t.detach().numpy()
        np.testing.assert_allclose(to_numpy(flat[k]), want, rtol=1e-12, atol=1e-14, err_msg=f"flat {k}")
        np.testing.assert_allclose(to_numpy(plain[k]), want, rtol=1e-12, atol=1e-14, err_msg=f"per array {k}")


def test_weight_decay_on_is_checked_saved_and_restored(tmp_path):
    with pytest.raises(ValueError, match=r"^AdamW: weight_decay_on must be 'all' or 'matrices' \(only the parameters "
                                         r"with 2 or more axes decay: kernels, not biases or norm gains\), got 'bias'$"):
        AdamW(weight_decay_on="bias")
    opt = AdamW(0.01, weight_decay=0.1, weight_decay_on="matrices")
    assert opt.get_config()["weight_decay_on"] == "matrices"
    X, y = _batch(xpnet.device("cpu"), n=8)
    model = _mlp("cpu")
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=1, batch_size=4, verbose=0,
              checkpoint_dir=tmp_path)
    found = xpnet.checkpoint.load_checkpoint(tmp_path / "last.npz", _mlp("cpu"))
    assert type(found.optimizer) is AdamW and found.optimizer.weight_decay_on == "matrices"
    again = AdamW()  # another rule given: it takes the checkpoint's, as every other setting
    again.load_state_dict(opt.state_dict(), model.parameters())
    assert again.weight_decay_on == "matrices"


def test_on_a_cpu_each_parameter_is_stepped_on_its_own():
    """NumPy's rule (backend.routine "step_at_once"): AdamW steps each parameter's view of the flat buffer,
    so a step's temporaries are the size of one parameter, not of the model (fresh host memory at every
    step: several times slower). Four equal layers: array by array the peak is about half the model."""
    tracemalloc = pytest.importorskip("tracemalloc")
    model = Sequential([Dense(100, 100) for _ in range(4)], seed=0)
    X = np.random.default_rng(0).normal(size=(8, 100)).astype(np.float32)
    opt = AdamW()
    loss = xpnet.MSE()
    loss.forward(model.forward(X, training=True), np.zeros((8, 100), np.float32))
    model.backward(loss.backward())
    opt.step(model.parameters(), model.gradients())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        opt.step(model.parameters(), model.gradients())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    size = sum(v.nbytes for v in model.parameters().values())
    assert peak < 0.75 * size, f"{peak / size:.2f} model sizes at the peak"
    assert model.parameters().flat is not None and not model.parameters().flat.at_once
    strict = pytest.importorskip("array_api_strict")
    assert xpnet.parameters.step_at_once(strict.zeros(3))  # the generic rule: at once (one launch per term)
