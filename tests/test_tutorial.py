"""xpnet.tutorial.NeuralNetwork against the book's own NumPy class (kept verbatim below), on every backend."""

from __future__ import annotations

import types

import numpy
import numpy as np
import pytest

import xpnet
from xpnet import inplace, backend
from xpnet import deferred
from xpnet.tutorial import NeuralNetwork

try:
    import scipy.special
except ImportError:  # the book uses scipy only for these two functions
    scipy = types.SimpleNamespace(special=types.SimpleNamespace(
        expit=lambda x: 1.0 / (1.0 + numpy.exp(-x)), logit=lambda p: numpy.log(p / (1.0 - p))))


# ---- the book's class, verbatim (Tariq Rashid, "Make Your Own Neural Network", part 2/3 code) ----
# neural network class definition
class neuralNetwork:

    # initialise the neural network
    def __init__(self, inputnodes, hiddennodes, outputnodes, learningrate):
        # set number of nodes in each input, hidden, output layer
        self.inodes = inputnodes
        self.hnodes = hiddennodes
        self.onodes = outputnodes

        # link weight matrices, wih and who
        # weights inside the arrays are w_i_j, where link is from node i to node j in the next layer
        # w11 w21
        # w12 w22 etc
        self.wih = numpy.random.normal(0.0, pow(self.hnodes, -0.5), (self.hnodes, self.inodes))
        self.who = numpy.random.normal(0.0, pow(self.onodes, -0.5), (self.onodes, self.hnodes))

        # learning rate
        self.lr = learningrate

        # activation function is the sigmoid function
        self.activation_function = lambda x: scipy.special.expit(x)
        self.inverse_activation_function = lambda x: scipy.special.logit(x)

        pass

    # train the neural network
    def train(self, inputs_list, targets_list):
        # convert inputs list to 2d array
        inputs = numpy.array(inputs_list, ndmin=2).T
        targets = numpy.array(targets_list, ndmin=2).T

        # calculate signals into hidden layer
        hidden_inputs = numpy.dot(self.wih, inputs)
        # calculate the signals emerging from hidden layer
        hidden_outputs = self.activation_function(hidden_inputs)

        # calculate signals into final output layer
        final_inputs = numpy.dot(self.who, hidden_outputs)
        # calculate the signals emerging from final output layer
        final_outputs = self.activation_function(final_inputs)

        # output layer error is the (target - actual)
        output_errors = targets - final_outputs
        # hidden layer error is the output_errors, split by weights, recombined at hidden nodes
        hidden_errors = numpy.dot(self.who.T, output_errors)

        # update the weights for the links between the hidden and output layers
        self.who += self.lr * numpy.dot((output_errors * final_outputs * (1.0 - final_outputs)), numpy.transpose(hidden_outputs))

        # update the weights for the links between the input and hidden layers
        self.wih += self.lr * numpy.dot((hidden_errors * hidden_outputs * (1.0 - hidden_outputs)), numpy.transpose(inputs))

        pass

    # query the neural network
    def query(self, inputs_list):
        # convert inputs list to 2d array
        inputs = numpy.array(inputs_list, ndmin=2).T

        # calculate signals into hidden layer
        hidden_inputs = numpy.dot(self.wih, inputs)
        # calculate the signals emerging from hidden layer
        hidden_outputs = self.activation_function(hidden_inputs)

        # calculate signals into final output layer
        final_inputs = numpy.dot(self.who, hidden_outputs)
        # calculate the signals emerging from final output layer
        final_outputs = self.activation_function(final_inputs)

        return final_outputs

    # backquery the neural network
    # we'll use the same termnimology to each item,
    # eg target are the values at the right of the network, albeit used as input
    # eg hidden_output is the signal to the right of the middle nodes
    def backquery(self, targets_list):
        # transpose the targets list to a vertical array
        final_outputs = numpy.array(targets_list, ndmin=2).T

        # calculate the signal into the final output layer
        final_inputs = self.inverse_activation_function(final_outputs)

        # calculate the signal out of the hidden layer
        hidden_outputs = numpy.dot(self.who.T, final_inputs)
        # scale them back to 0.01 to .99
        hidden_outputs -= numpy.min(hidden_outputs)
        hidden_outputs /= numpy.max(hidden_outputs)
        hidden_outputs *= 0.98
        hidden_outputs += 0.01

        # calculate the signal into the hidden layer
        hidden_inputs = self.inverse_activation_function(hidden_outputs)

        # calculate the signal out of the input layer
        inputs = numpy.dot(self.wih.T, hidden_inputs)
        # scale them back to 0.01 to .99
        inputs -= numpy.min(inputs)
        inputs /= numpy.max(inputs)
        inputs *= 0.98
        inputs += 0.01

        return inputs
# ---- end of the book's class ----


def samples(n=20, inodes=784, onodes=10, seed=0):
    """MNIST-like rows: inputs in 0.01..1 as the book scales them, targets 0.01 / 0.99."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, inodes)) * (rng.random((n, inodes)) < 0.2)
    inputs = pixels / 255.0 * 0.99 + 0.01
    targets = np.full((n, onodes), 0.01)
    targets[np.arange(n), rng.integers(0, onodes, n)] = 0.99
    return inputs, targets


def book_copy(n: NeuralNetwork) -> neuralNetwork:
    """The book's class holding the same initial weights as ``n`` (in float64)."""
    book = neuralNetwork(n.inodes, n.hnodes, n.onodes, n.lr)
    book.wih = xpnet.to_numpy(n.wih).astype(np.float64)
    book.who = xpnet.to_numpy(n.who).astype(np.float64)
    return book


# -- parity with the book -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-6), ("float32", 1e-5)])
@pytest.mark.parametrize("defer", [32, 3, 0], ids=["queued32", "queued3", "eager"])
def test_train_matches_the_book(dev, dtype, tol, defer, monkeypatch):
    monkeypatch.setattr(NeuralNetwork, "defer", defer)
    n = NeuralNetwork(784, 200, 10, 0.1, device=dev, seed=0, dtype=dtype)
    book = book_copy(n)
    inputs, targets = samples(20)
    for x, t in zip(inputs, targets):
        n.train(x.astype(dtype), t.astype(dtype))  # NumPy rows, as the book's loop passes them
        book.train(x, t)
    for name in ("wih", "who"):
        got = getattr(n, name)
        assert backend.device_of(got) == dev and got.dtype == dev.dtype(dtype)
        np.testing.assert_allclose(xpnet.to_numpy(got), getattr(book, name), rtol=0, atol=tol, err_msg=name)
    if dtype == "float64":  # "exactly-ish": only the rounding order differs
        np.testing.assert_allclose(xpnet.to_numpy(n.wih), book.wih, rtol=0, atol=1e-13)
    x = inputs[0]
    np.testing.assert_allclose(xpnet.to_numpy(n.query(x)), book.query(x), atol=tol)


def test_functional_path_for_immutable_arrays(monkeypatch):
    """Where arrays cannot be written in place (JAX-like), train rebinds the weights instead."""
    monkeypatch.setattr(deferred, "is_writeable_array", lambda a: False)
    monkeypatch.setattr(inplace, "is_writeable_array", lambda a: False)
    n = NeuralNetwork(30, 8, 4, 0.3, device="cpu", seed=1, dtype="float64")
    book = book_copy(n)
    wih_before = n.wih
    inputs, targets = samples(10, 30, 4)
    for x, t in zip(inputs, targets):
        n.train(x, t)
        book.train(x, t)
    assert n.wih is not wih_before and n._wih.queued == 0
    np.testing.assert_allclose(xpnet.to_numpy(n.wih), book.wih, atol=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(n.who), book.who, atol=1e-12)


def test_train_accepts_lists_and_columns():
    n = NeuralNetwork(3, 3, 3, 0.3, device="cpu", seed=0)  # the book's 3x3 example
    book = book_copy(n)
    n.train([1.0, 0.5, -1.5], [0.99, 0.01, 0.01])
    n.train(np.array([[0.2], [0.4], [0.6]]), np.array([[0.01, 0.99, 0.01]]))  # column and row: any shape
    book.train([1.0, 0.5, -1.5], [0.99, 0.01, 0.01])
    book.train([0.2, 0.4, 0.6], [0.01, 0.99, 0.01])
    np.testing.assert_allclose(xpnet.to_numpy(n.wih), book.wih, atol=1e-6)


def test_backquery_matches_the_book(dev):
    n = NeuralNetwork(784, 50, 10, 0.1, device=dev, seed=2, dtype="float64")
    inputs, targets = samples(30)
    for x, t in zip(inputs, targets):
        n.train(x, t)
    book = book_copy(n)
    t = np.full(10, 0.01)
    t[3] = 0.99
    image = n.backquery(t)
    assert backend.device_of(image) == dev and tuple(image.shape) == (784, 1)
    got = xpnet.to_numpy(image)
    np.testing.assert_allclose(got, book.backquery(t), atol=1e-9)
    assert got.min() == pytest.approx(0.01) and got.max() == pytest.approx(0.99)


def test_backquery_of_constant_signal_is_finite():
    n = NeuralNetwork(4, 3, 2, 0.1, device="cpu", seed=0)
    n.who = np.zeros((2, 3))  # every hidden signal equal: the book would divide 0 by 0
    out = xpnet.to_numpy(n.backquery([0.5, 0.5]))
    assert np.isfinite(out).all() and out.shape == (4, 1)


# -- query / train_batch -----------------------------------------------------------------------
def test_query_shapes_and_range(dev):
    n = NeuralNetwork(784, 100, 10, 0.1, device=dev, seed=0)
    inputs, _ = samples(7)
    one = n.query(inputs[0])
    assert tuple(one.shape) == (10, 1) and backend.device_of(one) == dev and one.dtype == dev.dtype("float32")
    many = xpnet.to_numpy(n.query(inputs))  # rows in, one column per sample out
    assert many.shape == (10, 7)
    assert ((many > 0) & (many < 1)).all()
    np.testing.assert_allclose(many[:, :1], xpnet.to_numpy(one), atol=1e-6)
    book = book_copy(n)
    np.testing.assert_allclose(many, book.query(inputs.astype(np.float32)), atol=1e-5)


def test_train_batch_is_the_mean_of_per_sample_steps(dev):
    n = NeuralNetwork(20, 6, 3, 0.5, device=dev, seed=0, dtype="float64")
    inputs, targets = samples(5, 20, 3)
    steps_wih, steps_who = [], []
    for x, t in zip(inputs, targets):  # each sample's book step, all from the same starting weights
        book = book_copy(n)
        book.train(x, t)
        steps_wih.append(book.wih - xpnet.to_numpy(n.wih))
        steps_who.append(book.who - xpnet.to_numpy(n.who))
    wih0, who0 = xpnet.to_numpy(n.wih).copy(), xpnet.to_numpy(n.who).copy()
    n.train_batch(inputs, targets)
    np.testing.assert_allclose(xpnet.to_numpy(n.wih), wih0 + np.mean(steps_wih, axis=0), atol=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(n.who), who0 + np.mean(steps_who, axis=0), atol=1e-12)


def test_train_batch_of_one_equals_train():
    a = NeuralNetwork(20, 6, 3, 0.5, device="cpu", seed=0, dtype="float64")
    b = NeuralNetwork(20, 6, 3, 0.5, device="cpu", seed=0, dtype="float64")
    inputs, targets = samples(4, 20, 3)
    for x, t in zip(inputs, targets):
        a.train(x, t)
        b.train_batch(x.reshape(1, -1), t.reshape(1, -1))
    np.testing.assert_allclose(xpnet.to_numpy(a.wih), xpnet.to_numpy(b.wih), atol=1e-13)


# -- weights, init and arguments ---------------------------------------------------------------
def test_init_like_the_book_and_same_on_every_backend(dev):
    n = NeuralNetwork(784, 200, 10, 0.1, device=dev, seed=42)
    rng = backend.host_rng(42)
    wih = rng.normal(0.0, pow(200, -0.5), (200, 784)).astype(np.float32)
    who = rng.normal(0.0, pow(10, -0.5), (10, 200)).astype(np.float32)
    np.testing.assert_array_equal(xpnet.to_numpy(n.wih), wih)
    np.testing.assert_array_equal(xpnet.to_numpy(n.who), who)
    assert tuple(n.wih.shape) == (200, 784) and tuple(n.who.shape) == (10, 200)
    assert (n.inodes, n.hnodes, n.onodes, n.lr) == (784, 200, 10, 0.1)


def test_weights_assignment(dev):
    n = NeuralNetwork(3, 2, 2, 0.1, device=dev, seed=0)
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    n.wih = host
    assert backend.device_of(n.wih) == dev and n.wih.dtype == dev.dtype("float32")
    host[0, 0] = 100.0  # a copy was stored
    np.testing.assert_array_equal(xpnet.to_numpy(n.wih), np.arange(6).reshape(2, 3))
    n.who = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(xpnet.to_numpy(n.who), [[1, 2], [3, 4]])
    n.who = dev.asarray(np.eye(2))  # a device array
    np.testing.assert_array_equal(xpnet.to_numpy(n.who), np.eye(2))
    with pytest.raises(ValueError, match=r"wih must have shape \(2, 3\)"):
        n.wih = np.zeros((3, 2))
    n.train([0.1, 0.2, 0.3], [0.99, 0.01])  # training after assignment starts from the new weights
    book = neuralNetwork(3, 2, 2, 0.1)
    book.wih, book.who = np.arange(6, dtype=float).reshape(2, 3), np.eye(2)
    book.train([0.1, 0.2, 0.3], [0.99, 0.01])
    np.testing.assert_allclose(xpnet.to_numpy(n.wih), book.wih, atol=1e-6)


def test_assigning_wih_drops_queued_updates():
    n = NeuralNetwork(3, 2, 2, 0.1, device="cpu", seed=0)
    n.train([0.1, 0.2, 0.3], [0.99, 0.01])
    assert n._wih.queued == 1
    n.wih = np.ones((2, 3))
    np.testing.assert_array_equal(xpnet.to_numpy(n.wih), np.ones((2, 3)))


@pytest.mark.parametrize("args, match", [
    ((0, 2, 2, 0.1), "inputnodes"),
    ((2, 2.5, 2, 0.1), "hiddennodes"),
    ((2, 2, True, 0.1), "outputnodes"),
    ((2, 2, 2, 0.0), "learningrate"),
    ((2, 2, 2, "0.1"), "learningrate"),
    ((2, 2, 2, float("nan")), "learningrate"),
])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        NeuralNetwork(*args, device="cpu")


def test_bad_dtype_and_inputs():
    with pytest.raises(ValueError, match="dtype"):
        NeuralNetwork(2, 2, 2, 0.1, device="cpu", dtype="int32")
    n = NeuralNetwork(4, 3, 2, 0.1, device="cpu")
    with pytest.raises(ValueError, match="inputs_list must hold 4 values"):
        n.train([1.0, 2.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="targets_list must hold 2 values"):
        n.train([1.0, 2.0, 3.0, 4.0], [0.5])
    with pytest.raises(ValueError, match=r"shape \(samples, 4\)"):
        n.query(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="input rows"):
        n.train_batch(np.zeros((3, 4)), np.zeros((2, 2)))


def test_lr_stays_a_python_float():
    n = NeuralNetwork(4, 3, 2, np.float64(0.25), device="cpu")
    assert type(n.lr) is float
    n.train(np.full(4, 0.5, np.float32), np.full(2, 0.5, np.float32))
    assert n.wih.dtype == np.float32 and n.who.dtype == np.float32


# -- speed (issue 4) ---------------------------------------------------------------------------
# The per-sample speed against the book's code is measured, not asserted: a timing assertion on a shared
# machine either flakes or is loosened until it tests nothing (the old test here asserted 0.8x for a 0.5x
# target). `python benchmarks/bench_tutorial.py` times both interleaved and prints the ratio.


# -- the deferred-update queue behind wih ------------------------------------------------------
@pytest.mark.parametrize("defer", [4, 0], ids=["queued", "eager"])
def test_deferred_matrix_equals_eager_updates(dev, defer):
    """matvec sees queued updates, add() applies at once beside a queue, array() empties the queue
    without changing the value; a full queue is applied by itself."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 7))
    m = deferred.DeferredMatrix(dev.asarray(w0.copy(), "float64"), defer, dev)
    expected = w0.copy()
    for i in range(6):  # past one full queue of 4
        u, x = rng.normal(size=5), rng.normal(size=7)
        m.add_outer(dev.asarray(u, "float64"), dev.asarray(x, "float64"))
        expected += np.outer(u, x)
        probe = rng.normal(size=7)
        np.testing.assert_allclose(xpnet.to_numpy(m.matvec(dev.asarray(probe, "float64"))), expected @ probe,
                                   atol=1e-12)
    assert m.queued == (2 if defer and m.defer else 0)
    step = rng.normal(size=(5, 7))
    m.add(dev.asarray(step, "float64"))
    expected += step
    np.testing.assert_allclose(xpnet.to_numpy(m.array()), expected, atol=1e-12)
    assert m.queued == 0
    np.testing.assert_allclose(xpnet.to_numpy(m.array()), expected, atol=1e-12)


def test_deferred_matrix_without_in_place_writes_is_eager(monkeypatch):
    monkeypatch.setattr(deferred, "is_writeable_array", lambda a: False)
    monkeypatch.setattr(inplace, "is_writeable_array", lambda a: False)
    dev = xpnet.device("cpu")
    w = dev.asarray(np.zeros((2, 3)), "float64")
    m = deferred.DeferredMatrix(w, 32, dev)
    m.add_outer(dev.asarray(np.ones(2), "float64"), dev.asarray(np.ones(3), "float64"))
    assert m.defer == 0 and m.queued == 0 and m.array() is not w
    np.testing.assert_array_equal(xpnet.to_numpy(m.array()), np.ones((2, 3)))
