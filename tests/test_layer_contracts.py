"""The public surface of layers, activations and initializers, beyond their math harness.

What ``test_layers.py`` does not pin down: reprs and configs, ``layer(x)``, default arguments (dtype,
``alpha``, ``training``), the limits the constructors accept, the bias add on arrays that cannot be
written in place (the JAX path), the edge values of Step and LeakyReLU, Softmax on a 3-D input and
``log_softmax``. References are float64 NumPy written here.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Flatten, Identity, Layer, LeakyReLU, ReLU, Softmax, Step, Tanh, to_numpy
from xpnet import init
from xpnet.layers import activations, core
from xpnet.backend import host_rng


def test_reprs_show_the_constructor_arguments():
    assert repr(Dense(3, 2)) == "Dense(in_features=3, out_features=2, init='lecun_normal', bias=True)"
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(alpha=0.2)"
    assert repr(ReLU()) == "ReLU()" and repr(Flatten()) == "Flatten()"


def test_calling_a_layer_is_its_forward_pass_with_training_off_by_default(dev):
    class Record(Identity):
        def forward(self, x, training=False):
            self.calls = getattr(self, "calls", []) + [(to_numpy(x).tolist(), training)]
            return x

    layer = Record()
    x = dev.asarray(np.array([[1.0, -2.0]]))
    assert layer(x) is x
    layer(x, training=True)
    layer(x, True)
    assert layer.calls == [([[1.0, -2.0]], False), ([[1.0, -2.0]], True), ([[1.0, -2.0]], True)]
    dense = Dense(2, 3)
    dense.build(dev, host_rng(0))
    np.testing.assert_array_equal(to_numpy(dense(x)), to_numpy(dense.forward(x)))


def test_the_base_layer_is_abstract():
    with pytest.raises(NotImplementedError):
        Layer()(np.zeros((1, 1)))
    with pytest.raises(NotImplementedError):
        Layer().backward(np.zeros((1, 1)))
    layer = Layer()
    layer.build(xpnet.device("cpu"), host_rng(0))
    assert layer.params == {} and layer.grads == {} and layer.get_config() == {}


def _my_init(shape, rng, device, dtype="float32"):
    return init.zeros(shape, rng, device, dtype)


def test_dense_records_the_initializer_by_name():
    assert Dense(2, 2, init="he_normal").get_config()["init"] == "he_normal"
    assert Dense(2, 2, init=_my_init).get_config()["init"] == "_my_init"
    assert Dense(2, 2, init=functools.partial(_my_init)).get_config()["init"] == "custom"  # no __name__
    layer = Dense(2, 2, init=_my_init)
    layer.build(xpnet.device("cpu"), host_rng(0))
    np.testing.assert_array_equal(layer.params["W"], np.zeros((2, 2)))


def test_dense_builds_float32_by_default(dev):
    layer = Dense(4, 3)
    layer.build(dev, host_rng(0))
    assert layer.params["W"].dtype == dev.dtype("float32") and layer.params["b"].dtype == dev.dtype("float32")
    assert xpnet.device_of(layer.params["W"]) == dev and xpnet.device_of(layer.params["b"]) == dev


@pytest.mark.parametrize("name", ["lecun_normal", "he_normal", "glorot_uniform", "zeros"])
def test_initializers_default_to_float32(dev, name):
    w = init.get(name)((5, 4), host_rng(0), dev)
    assert w.dtype == dev.dtype("float32") and tuple(w.shape) == (5, 4) and xpnet.device_of(w) == dev


def test_initializer_lookup():
    assert init.get(_my_init) is _my_init
    assert init.get("he_normal") is init.he_normal
    with pytest.raises(ValueError, match=r"^unknown initializer 'normal': choose one of lecun_normal, he_normal, "
                                         r"glorot_uniform, zeros, or 'normal\(std=S\)' for N\(0, S\^2\) "
                                         r"\(GPT-2's 'normal\(std=0.02\)'\)$"):
        init.get("normal")


def test_dense_bias_add_on_arrays_that_cannot_be_written(dev, monkeypatch):
    """Libraries without in-place updates (JAX) get ``y = y + b``; the values are the same."""
    monkeypatch.setattr(core, "is_writeable_array", lambda a: False)
    layer = Dense(3, 2)
    layer.build(dev, host_rng(0), "float32")
    layer.params["b"] = dev.asarray(np.array([0.5, -2.0]))
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.25]])
    W = to_numpy(layer.params["W"]).astype(np.float64)
    y = layer(dev.asarray(x))
    np.testing.assert_allclose(to_numpy(y), x @ W + [0.5, -2.0], rtol=1e-6)


def test_flatten_keeps_the_batch_axis(dev):
    x = np.arange(24.0).reshape(2, 3, 4)
    layer = Flatten()
    y = layer(dev.asarray(x))
    np.testing.assert_array_equal(to_numpy(y), x.reshape(2, 12))
    dx = layer.backward(dev.asarray(np.ones((2, 12))))
    assert tuple(dx.shape) == (2, 3, 4)


def test_leaky_relu_alpha_limits_and_default(dev):
    assert LeakyReLU().alpha == 0.01
    y = LeakyReLU()(dev.asarray(np.array([[-2.0, 3.0]])))
    np.testing.assert_allclose(to_numpy(y), [[-0.02, 3.0]], rtol=1e-6)
    zero = LeakyReLU(0.0)  # allowed: it is ReLU
    np.testing.assert_array_equal(to_numpy(zero(dev.asarray(np.array([[-2.0, 3.0]])))), [[0.0, 3.0]])
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"LeakyReLU: alpha must be in \[0, 1\)"):
            LeakyReLU(bad)


def test_step_is_one_at_exactly_zero(dev):
    """Heaviside as the perceptron uses it: y = 1 if x >= 0."""
    y = Step()(dev.asarray(np.array([[-1e-30, 0.0, -0.0, 1e-30, -3.0]])))
    np.testing.assert_array_equal(to_numpy(y), [[0.0, 1.0, 1.0, 1.0, 0.0]])


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_on_a_3d_input_works_over_the_last_axis(dev):
    """(batch, time, classes): forward and backward over the classes, against the Jacobian product."""
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    layer = Softmax()
    y = layer(dev.asarray(x), training=True)
    p = _softmax(x)
    np.testing.assert_allclose(to_numpy(y), p, rtol=1e-5)
    dx = to_numpy(layer.backward(dev.asarray(dy))).astype(np.float64)
    jac = np.einsum("btj,jk->btjk", p, np.eye(4)) - np.einsum("btj,btk->btjk", p, p)
    np.testing.assert_allclose(dx, np.einsum("btjk,btj->btk", jac, dy), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax(dev, axis):
    x = np.array([[1.0, 2.0, 3.0], [1e3, 0.0, -1e3]])
    got = to_numpy(activations.log_softmax(dev.asarray(x), axis=axis)).astype(np.float64)
    m = x.max(axis=axis, keepdims=True)
    expected = x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(to_numpy(activations.log_softmax(dev.asarray(x[:1]))), np.log(_softmax(x[:1])),
                               rtol=1e-6)


# -- layers own their weights: build without drawing, shapes before allocation, rebuilt from a config ----
def test_build_without_init_allocates_zeros_and_draws_nothing(dev):
    rng = host_rng(0)
    layer = Dense(3, 2)
    assert layer.param_shapes() == {"W": (3, 2), "b": (2,)}
    assert Dense(3, 2, bias=False).param_shapes() == {"W": (3, 2)} and Flatten().param_shapes() == {}
    layer.build(dev, rng, "float64", init=False)
    assert {k: tuple(v.shape) for k, v in layer.params.items()} == layer.param_shapes()
    assert all(not to_numpy(v).any() and v.dtype == dev.dtype("float64") for v in layer.params.values())
    assert rng.bit_generator.state == host_rng(0).bit_generator.state  # nothing was drawn
    layer.build(dev, rng)  # init=True (the default) draws
    assert to_numpy(layer.params["W"]).any()


def test_from_config_rebuilds_every_registered_layer():
    for layer in (Dense(3, 2, init="he_normal", bias=False), LeakyReLU(0.3), Softmax(), Flatten(), xpnet.Dropout(0.2),
                  xpnet.BatchNorm1d(4, momentum=0.05, eps=1e-3), xpnet.BatchNorm2d(3, momentum=0.2),
                  xpnet.Conv2D(2, 4, (3, 1), stride=2, padding=(0, 1), bias=False, init="lecun_normal"),
                  xpnet.MaxPool2D(3, stride=1), xpnet.AvgPool2D((2, 3)), xpnet.GlobalAvgPool2D(),
                  xpnet.Reshape((1, -1, 4)), xpnet.MultiHeadAttention(8, 2, causal=False, dropout=0.1, init="zeros"),
                  xpnet.Residual([xpnet.Tanh(), xpnet.Residual([xpnet.Dropout(0.5)])]),
                  xpnet.Embedding(7, 3, init="he_normal"), xpnet.GELU(),
                  xpnet.PositionalEmbedding(9, 2, init=init.normal(0.5)), xpnet.LayerNorm(6, eps=1e-3),
                  xpnet.TiedDense(3)):
        again = type(layer).from_config(layer.get_config())
        assert type(again) is type(layer) and again.get_config() == layer.get_config()
    ours = {name for name, cls in xpnet.layers.LAYERS.items() if cls.__module__.startswith("xpnet.")}
    assert ours == {"AvgPool2D", "BatchNorm1d", "BatchNorm2d", "Conv2D", "Dense", "Dropout",
                                        "Embedding", "Flatten", "GELU", "GlobalAvgPool2D", "Identity", "LayerNorm",
                                        "LeakyReLU", "MaxPool2D", "MultiHeadAttention", "PositionalEmbedding", "ReLU",
                                        "Reshape", "Residual", "Sigmoid", "Softmax", "Step", "Tanh", "TiedDense"}
    assert all(xpnet.layers.LAYERS[name] is getattr(xpnet, name) for name in ours)


def test_a_custom_initializer_saved_by_name_keeps_the_name_and_refuses_to_draw():
    layer = Dense.from_config({"in_features": 2, "out_features": 2, "init": "_my_init"})
    assert layer.get_config()["init"] == "_my_init"
    layer.build(xpnet.device("cpu"), host_rng(0), init=False)  # loading needs no initializer
    with pytest.raises(ValueError, match=r"^Dense: the initializer '_my_init' was a custom function, which a "
                                         r"saved file keeps by name only; make the layer again with init="):
        layer.build(xpnet.device("cpu"), host_rng(0))


def test_one_sigmoid_for_the_layer_and_the_loss(dev):
    x = np.array([[-1000.0, -80.5, -3.0, 0.0, 2.5, 1000.0]])
    expected = 1.0 / (1.0 + np.exp(-np.maximum(x, -80.0)))
    got = activations.sigmoid(dev.asarray(x, "float64"))
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-15)
    np.testing.assert_array_equal(to_numpy(xpnet.Sigmoid()(dev.asarray(x, "float64"))), to_numpy(got))
    loss = xpnet.BinaryCrossEntropy()
    z = dev.asarray(x.T, "float64")
    loss.forward(z, dev.asarray(np.ones((6, 1)), "float64"))
    np.testing.assert_allclose(to_numpy(loss.backward()), (expected.T - 1.0) / 6, rtol=1e-15)


# -- a model's shapes, as its layers tell them ---------------------------------------------------------
@pytest.mark.parametrize("layers, first, shape", [
    ([Dense(4, 3), ReLU(), Dense(3, 2)], "Dense", (4,)),
    ([xpnet.Dropout(0.1), Tanh(), xpnet.BatchNorm1d(5), Dense(5, 2)], "BatchNorm1d", (5,)),
    ([xpnet.Reshape((1, 6, 6)), xpnet.Conv2D(1, 2, 3)], "Reshape", (36,)),  # the flat rows it takes
    ([xpnet.Reshape((-1, 4)), Flatten(), Dense(4, 2)], "Reshape", None),
    ([ReLU(), Flatten(), Dense(12, 2)], "Flatten", None),  # (3, 4), (12,), (2, 6): any of them
    ([xpnet.Conv2D(1, 2, 3), Flatten()], "Conv2D", None),
    ([xpnet.BatchNorm2d(3), ReLU()], "BatchNorm2d", None),
    ([Tanh(), Softmax()], None, None),
], ids=["Dense", "BatchNorm1d-after-shape-keeping", "Reshape", "Reshape-minus-1", "Flatten", "Conv2D",
        "BatchNorm2d", "activations-only"])
def test_the_model_input_shape_is_the_first_layers_that_fixes_it(layers, first, shape):
    found = xpnet.layers.input_layer(layers)
    assert (None if found is None else type(found).__name__) == first
    assert xpnet.layers.model_input_shape(layers) == shape


def test_the_output_shapes_go_from_layer_to_layer():
    layers = [xpnet.Reshape((1, 6, 6)), xpnet.Conv2D(1, 4, 3), xpnet.MaxPool2D(2), Flatten(), Dense(16, 3)]
    assert xpnet.layers.model_output_shapes(layers, (None, 36)) == [
        (None, 1, 6, 6), (None, 4, 4, 4), (None, 4, 2, 2), (None, 16), (None, 3)]
    assert xpnet.layers.model_output_shapes(layers, (7, 6, 6))[-1] == (7, 3)
    with pytest.raises(ValueError, match=r"^layer 3, Dense\(in_features=16.*\), does not take input of shape "
                                         r"\(None, 36\) \(ValueError: Dense\(16, 3\) expects input of shape "
                                         r"\(batch, \.\.\., 16\), got \(None, 36\)\)$"):
        xpnet.layers.model_output_shapes(layers[1:], (None, 1, 8, 8))  # 3x3 pixels after the pooling


class Pick(Layer):
    """A layer of the user's that changes the shape and does not say so: nothing guesses its shape."""

    def forward(self, x, training=False):
        return x[:, :2]


class Doubler(Layer):
    keeps_shape = True  # says that it takes any shape and keeps it

    def forward(self, x, training=False):
        return 2 * x


def test_a_layer_of_your_own_tells_its_shapes_or_they_are_not_known():
    assert Pick().compute_output_shape((None, 5)) is None and Pick().fixed_input_shape() is None
    assert xpnet.layers.model_output_shapes([Dense(4, 5), Pick(), Dense(2, 1)], (None, 4)) == [(None, 5), None, None]
    assert xpnet.layers.model_input_shape([Pick(), Dense(2, 1)]) is None  # not (2,): Pick takes 5 columns
    assert Doubler().compute_output_shape((None, 3, 4)) == (None, 3, 4)
    assert xpnet.layers.model_input_shape([Doubler(), Dense(2, 1)]) == (2,)


@pytest.mark.parametrize("make, shape", [
    (lambda: Dense(4, 3), (2, 4)), (lambda: ReLU(), (2, 4)),
    (lambda: xpnet.Conv2D(1, 2, 3), (2, 1, 5, 5)), (lambda: xpnet.MaxPool2D(2), (2, 1, 4, 4))],
    ids=["Dense", "ReLU", "Conv2D", "MaxPool2D"])
def test_backward_frees_what_forward_kept_and_runs_once_per_forward(dev, make, shape):
    """The heavy layers hand their activations to backward and drop them (PyTorch frees a graph's saved
    tensors the same way): held into the next step they raised the CNN's peak memory above PyTorch's."""
    layer = make()
    layer.build(dev, host_rng(0))
    x = dev.asarray(np.random.default_rng(0).normal(size=shape))
    y = layer.forward(x, training=True)
    kept = [k for k in ("_x", "_y", "_cache") if getattr(layer, k, None) is not None]
    assert kept
    layer.backward(y * 1.0)
    assert all(getattr(layer, k) is None for k in kept)
    with pytest.raises(RuntimeError, match=r"backward runs once after each forward.*call forward again"):
        layer.backward(y * 1.0)
    layer.forward(x, training=True)
    layer.backward(y * 1.0)  # a forward again: a backward again
