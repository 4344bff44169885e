"""The seeds' ``NeuralNetwork`` ("Make Your Own Neural Network", seed 002) on any xpnet device.

Same constructor, same ``train`` / ``query`` / ``backquery`` and the same ``wih`` / ``who`` matrices as
the book's NumPy class, written once against the Array API so it runs on NumPy, CuPy, PyTorch and
array-api-strict::

    >>> n = NeuralNetwork(784, 200, 10, 0.1, device="cpu", seed=0)
    >>> n.train(pixels, targets)            # pixels (784,) in 0.01..1, targets (10,) of 0.01 / 0.99
    >>> n.query(pixels).shape               # one column per sample, like the book
    (10, 1)

The math, per sample (``o_h = sigmoid(wih x)``, ``o = sigmoid(who o_h)``)::

    e_o = t - o                 e_h = who^T e_o
    who += lr (e_o * o * (1 - o)) o_h^T
    wih += lr (e_h * o_h * (1 - o_h)) x^T

The book's hidden error ``who^T e_o`` leaves out the output sigmoid's slope ``o (1 - o)``, so the ``wih``
step is not exactly the gradient of the squared error (``Sequential`` follows that one). It is kept as
the book has it: same weights as the book's code, sample for sample (and ~0.96 MNIST test accuracy after
one epoch, where the exact gradient at the same learning rate gets ~0.945).

Speed: ``wih`` takes its updates through a small queue (:class:`xpnet.deferred.DeferredMatrix`) that adds
them a batch at a time as matrix products; ``train`` itself reads like the book's method.
"""

from __future__ import annotations

import functools
import math

from . import backend as _backend  # the constructor's ``backend`` argument would shadow the module
from .inplace import add_
from .arguments import check_count
from .deferred import DeferredMatrix, outer


def _on_device(method):
    """Run a method of the network under ``self.device.context()``: CuPy allocates and computes on the
    current GPU, so a ``cuda:1`` network must make it current (and put the caller's back) itself."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if self.device.kind != "cuda":  # nothing to enter: keep the ~1 us off the CPU's per-sample path
            return method(self, *args, **kwargs)
        with self.device.context():
            return method(self, *args, **kwargs)
    return run


def _sigmoid(xp, z):
    # = 1 / (1 + exp(-z)), as tanh, and nothing overflows for any z. Not layers.sigmoid on purpose: on the
    # per-sample path this form takes 2.2 us per 200-vector against 3.8 us (about 9% of a sample's time),
    # while its relative error in float32 grows in the tails (2e-4 at z = -10); the layers and losses keep
    # the accurate exp form, the book's class keeps the fast one.
    return 0.5 * xp.tanh(0.5 * z) + 0.5


def _logit(xp, y):
    """Inverse of the sigmoid (``scipy.special.logit`` in the book): ``log(y / (1 - y))``."""
    return xp.log(y / (1.0 - y))


def _rescale(xp, v):
    """Shift and scale ``v`` into 0.01..0.99, as the book's backquery does between layers."""
    v = v - xp.min(v)
    top = xp.max(v)
    v = v / xp.where(top > 0.0, top, 1.0)  # a constant vector would divide 0 by 0
    return v * 0.98 + 0.01


class NeuralNetwork:
    """Three-layer sigmoid network of "Make Your Own Neural Network": input, one hidden, output; no biases.

    ``wih`` has shape ``(hiddennodes, inputnodes)`` and ``who`` ``(outputnodes, hiddennodes)``, as in
    the book (``hidden = sigmoid(wih @ inputs)``); both start as ``normal(0, hiddennodes**-0.5)`` and
    ``normal(0, outputnodes**-0.5)``, drawn on the host from ``seed`` and then moved to ``device``, so a
    seed gives the same network on every backend. Assigning ``n.wih = ...`` accepts NumPy arrays, lists
    or device arrays and stores a copy on the device, in ``dtype``.

    ``device``/``backend`` are what :func:`xpnet.device` takes; ``dtype`` is ``"float32"`` (default) or
    ``"float64"``. The training error is the seeds' ``1/2 sum (t - o)^2``, descended with step ``lr``.
    """

    defer: int = 32  # queued wih updates per GEMM (see DeferredMatrix); 0 updates every sample

    def __init__(self, inputnodes, hiddennodes, outputnodes, learningrate, device="auto", seed=None,
                 dtype: str = "float32", backend: str | None = None):
        self.inodes = check_count("NeuralNetwork: inputnodes", inputnodes)
        self.hnodes = check_count("NeuralNetwork: hiddennodes", hiddennodes)
        self.onodes = check_count("NeuralNetwork: outputnodes", outputnodes)
        self.lr = learningrate
        if dtype not in ("float32", "float64"):
            raise ValueError(f"NeuralNetwork: dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = dtype
        self.device = _backend.device(device, backend=backend)
        rng = _backend.host_rng(seed)
        self.wih = rng.normal(0.0, pow(self.hnodes, -0.5), (self.hnodes, self.inodes))
        self.who = rng.normal(0.0, pow(self.onodes, -0.5), (self.onodes, self.hnodes))

    # -- weights and learning rate --------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value):
        # a Python float keeps float32 math float32 (a NumPy float64 scalar would promote it)
        try:
            value = float(value) if not isinstance(value, (str, bytes, bool)) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"NeuralNetwork: learningrate must be a positive finite number, got {value!r}")
        self._lr = value

    @property
    @_on_device
    def wih(self):
        """Input -> hidden weights, ``(hiddennodes, inputnodes)``, on the device.

        Its updates may wait in a queue (:class:`DeferredMatrix`); reading ``wih`` applies them first.
        Read it again after more training: an array read earlier may not show updates queued since.
        """
        return self._wih.array()

    @wih.setter
    @_on_device
    def wih(self, value):
        self._wih = DeferredMatrix(self._weights(value, (self.hnodes, self.inodes), "wih"), self.defer, self.device)

    @property
    def who(self):
        """Hidden -> output weights, ``(outputnodes, hiddennodes)``, on the device."""
        return self._who

    @who.setter
    def who(self, value):
        self._who = self._weights(value, (self.onodes, self.hnodes), "who")

    @_on_device
    def _weights(self, value, shape, name):
        dev = self.device
        a = dev.asarray(value, self.dtype)
        if tuple(a.shape) != shape:
            raise ValueError(f"NeuralNetwork: {name} must have shape {shape}, got {tuple(a.shape)}")
        return dev.xp.asarray(a, copy=True)  # never alias the caller's array: train updates in place

    # -- the book's three methods ---------------------------------------------------------------
    def _vector(self, values, n, name, where):
        a = self.device.asarray(values, self.dtype)
        if a.ndim != 1:
            size = math.prod(a.shape)
            if size != n:
                raise ValueError(f"NeuralNetwork.{where}: {name} must hold {n} values, "
                                 f"got shape {tuple(a.shape)}")
            a = self.device.xp.reshape(a, (n,))
        elif a.shape[0] != n:
            raise ValueError(f"NeuralNetwork.{where}: {name} must hold {n} values, got {a.shape[0]}")
        return a

    @_on_device
    def train(self, inputs_list, targets_list) -> None:
        """One step of the book's rule on one sample: ``inputnodes`` inputs, ``outputnodes`` targets."""
        xp = self.device.xp
        inputs = self._vector(inputs_list, self.inodes, "inputs_list", "train")
        targets = self._vector(targets_list, self.onodes, "targets_list", "train")

        hidden_outputs = _sigmoid(xp, self._wih.matvec(inputs))  # wih @ inputs
        final_outputs = _sigmoid(xp, xp.matmul(self._who, hidden_outputs))

        # the book's errors, scaled by lr here, once, on the small output vector
        output_errors = (targets - final_outputs) * self._lr
        hidden_errors = xp.matmul(output_errors, self._who)  # who.T @ output_errors, without the transpose

        self._who = add_(self._who, outer(output_errors * final_outputs * (1.0 - final_outputs), hidden_outputs))
        self._wih.add_outer(hidden_errors * hidden_outputs * (1.0 - hidden_outputs), inputs)

    @_on_device
    def train_batch(self, inputs, targets) -> None:
        """One step on a mini-batch: rows of ``inputs`` ``(n, inputnodes)``, ``targets`` ``(n, outputnodes)``.

        The step is the MEAN of the ``n`` per-sample updates of :meth:`train` computed at the same
        weights, ``W += lr/n sum_i dW_i`` (the gradient of the batch-mean error, as ``Sequential`` with
        :class:`~xpnet.MSE` and :class:`~xpnet.SGD`); with ``n = 1`` it equals :meth:`train`.
        """
        xp = self.device.xp
        X = self._rows(inputs, self.inodes, "inputs", "train_batch")
        T = self._rows(targets, self.onodes, "targets", "train_batch")
        if X.shape[0] != T.shape[0]:
            raise ValueError(f"NeuralNetwork.train_batch: {X.shape[0]} input rows but {T.shape[0]} target rows")
        wih, who = self._wih.array(), self._who
        H = _sigmoid(xp, xp.matmul(X, wih.T))
        O = _sigmoid(xp, xp.matmul(H, who.T))
        E_out = T - O
        E_hid = xp.matmul(E_out, who)
        scale = self._lr / X.shape[0]
        step_who = xp.matmul((E_out * O * (1.0 - O)).T, H) * scale
        step_wih = xp.matmul((E_hid * H * (1.0 - H)).T, X) * scale
        self._who = add_(self._who, step_who)
        self._wih.add(step_wih)

    def _rows(self, values, n, name, where):
        a = self.device.asarray(values, self.dtype)
        if a.ndim == 1 and a.shape[0] == n:
            a = self.device.xp.reshape(a, (1, n))
        if a.ndim != 2 or a.shape[1] != n:
            raise ValueError(f"NeuralNetwork.{where}: {name} must have shape (samples, {n}), got {tuple(a.shape)}")
        return a

    @_on_device
    def query(self, inputs_list):
        """The network's outputs, as a column ``(outputnodes, 1)`` like the book's.

        ``inputs_list`` is one sample (``inputnodes`` values) or rows of samples ``(n, inputnodes)``,
        which give one column per sample: ``(outputnodes, n)``. Returns an array on the device.
        """
        xp = self.device.xp
        X = self._rows(inputs_list, self.inodes, "inputs_list", "query")
        hidden_outputs = _sigmoid(xp, xp.matmul(X, self.wih.T))
        final_outputs = _sigmoid(xp, xp.matmul(hidden_outputs, self._who.T))
        return final_outputs.T

    @_on_device
    def backquery(self, targets_list):
        """Run the network backwards from output values to the input image it "imagines" (the book's).

        ``targets_list`` holds ``outputnodes`` values strictly between 0 and 1 (e.g. 0.99 for one label,
        0.01 elsewhere). Each layer inverts the sigmoid (``logit``), multiplies by the transposed weights
        and rescales the signal into 0.01..0.99. Returns ``(inputnodes, 1)`` on the device.
        """
        xp = self.device.xp
        final_outputs = self._vector(targets_list, self.onodes, "targets_list", "backquery")
        final_inputs = _logit(xp, final_outputs)
        hidden_outputs = _rescale(xp, xp.matmul(final_inputs, self._who))  # who.T @ final_inputs
        hidden_inputs = _logit(xp, hidden_outputs)
        inputs = _rescale(xp, xp.matmul(hidden_inputs, self.wih))  # wih.T @ hidden_inputs
        return xp.reshape(inputs, (self.inodes, 1))

    def __repr__(self):
        return (f"NeuralNetwork({self.inodes}, {self.hnodes}, {self.onodes}, {self._lr!r}, "
                f"device={str(self.device)!r}, dtype={self.dtype!r})")
