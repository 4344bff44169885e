"""Activation functions as layers: the value and its derivative side by side.

Each keeps what its derivative needs (usually its own output ``y``), so ``backward(dy)`` is one line
of the chain rule ``dx = dy * f'(x)``. Each takes input of any shape and keeps it (``keeps_shape``).
"""

from __future__ import annotations

import math

from .. import backend
from ..backend import namespace as array_namespace

from .base import Layer, register_layer

# exp(88.7) overflows float32; sigmoid(-80) = 1.8e-35 is already 0 for every purpose, so clamping
# there keeps exp finite (no overflow warning, no inf) without changing any float32 result that matters.
_EXP_LIMIT = 80.0


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, finite for any input (the one every xpnet module uses)."""
    xp = array_namespace(x)
    return 1.0 / (1.0 + xp.exp(-xp.maximum(x, -_EXP_LIMIT)))


@register_layer
class Sigmoid(Layer):
    """Logistic sigmoid ``y = 1 / (1 + exp(-x))``, ``dy/dx = y (1 - y)``. Finite for any input."""

    keeps_shape = True

    def forward(self, x, training=False):
        self._y = sigmoid(x)
        return self._y

    def backward(self, dy):
        y = self._y
        return dy * y * (1.0 - y)


@register_layer
class Tanh(Layer):
    """``y = tanh(x)``, ``dy/dx = 1 - y^2``."""

    keeps_shape = True

    def forward(self, x, training=False):
        self._y = array_namespace(x).tanh(x)
        return self._y

    def backward(self, dy):
        return dy * (1.0 - self._y * self._y)


@register_layer
class ReLU(Layer):
    """``y = max(x, 0) = x * [x > 0]``, ``dy/dx = [x > 0]`` (1 where x > 0, else 0)."""

    keeps_shape = True

    def forward(self, x, training=False):
        # Only y is kept: the next layer keeps the same array as its input, so the ReLU holds no memory of
        # its own (a cast mask kept from here was a (batch, features) array more at the peak).
        self._y = backend.dispatch("relu", relu, x)
        return self._y

    def backward(self, dy):
        return backend.dispatch("relu_backward", relu_backward, dy, self.saved("_y"))


def relu(x):
    """``max(x, 0)``."""
    return array_namespace(x).maximum(x, 0.0)


def relu_backward(dy, y):
    """``dy * [y > 0]`` for ``y = relu(x)`` (``[y > 0]`` is ``[x > 0]``)."""
    # bool * float is not in the standard, hence the cast.
    return dy * array_namespace(dy).astype(y > 0.0, dy.dtype)


@register_layer
class LeakyReLU(Layer):
    """``y = x if x > 0 else alpha * x``, ``dy/dx = 1 or alpha``."""

    keeps_shape = True

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"LeakyReLU: alpha must be in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x, training=False):
        xp = array_namespace(x)
        self._positive = xp.astype(x > 0.0, x.dtype)
        return xp.maximum(x, self.alpha * x)

    def backward(self, dy):
        return dy * (self.alpha + (1.0 - self.alpha) * self._positive)

    def get_config(self):
        return {"alpha": self.alpha}


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715 * _SQRT_2_OVER_PI


@register_layer
class GELU(Layer):
    """GELU in GPT-2's tanh form, as ``torch.nn.GELU(approximate="tanh")``:

        y = x h,   h = (1 + tanh(u)) / 2,   u = sqrt(2/pi) (x + 0.044715 x^3)
        dy/dx = h + x h' = h + 2 x h (1 - h) u',   u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)

    (``h' = (1 - tanh^2(u)) u' / 2 = 2 h (1 - h) u'``: only ``x`` and ``h`` are kept, 17 operations both ways.)
    The exact form ``x Phi(x)`` (``approximate="none"``, torch's default and nanoGPT's) needs ``erf``, which the
    Array API standard lacks, so it is refused; the two differ by at most 4.7e-4 (at x = +-2.70).
    """

    keeps_shape = True

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        if approximate != "tanh":
            raise ValueError(
                f"GELU: approximate={approximate!r} is not offered, only approximate='tanh': 0.5 x (1 + tanh("
                f"sqrt(2/pi) (x + 0.044715 x^3))), as torch.nn.GELU(approximate='tanh') and GPT-2. The exact "
                f"x Phi(x) needs erf, which the Array API standard lacks; the tanh form is within 4.7e-4 of it")
        self.approximate = approximate

    def forward(self, x, training=False):
        self._x = x
        y, self._h = (backend.routine(array_namespace(x), "gelu") or gelu)(x)
        return y

    def backward(self, dy):
        return (backend.routine(array_namespace(dy), "gelu_backward") or gelu_backward)(dy, self._x, self._h)

    def get_config(self):
        return {"approximate": self.approximate}


def gelu(x):
    """GELU's forward (tanh form): ``(y, h)``, ``h`` kept for the backward. The backend's ``gelu`` routine
    computes the same numbers."""
    h = 0.5 * array_namespace(x).tanh(x * (_SQRT_2_OVER_PI + _GELU_CUBIC * (x * x))) + 0.5
    return x * h, h


def gelu_backward(dy, x, h):
    """``dy * dy/dx`` from the forward's ``x`` and ``h``."""
    du2 = (6.0 * _GELU_CUBIC) * (x * x) + 2.0 * _SQRT_2_OVER_PI  # 2 u'
    return dy * (h + x * (h * (1.0 - h)) * du2)


@register_layer
class Softmax(Layer):
    """``y_i = exp(x_i) / sum_j exp(x_j)`` over the last axis, shifted by the max so it never overflows.

    ``dx = y * (dy - sum(dy * y))``. For classification prefer logits with
    :class:`~xpnet.losses.SoftmaxCrossEntropy`, which fuses this with the loss and is more accurate.
    """

    keeps_shape = True

    def forward(self, x, training=False):
        self._y = softmax(x)
        return self._y

    def backward(self, dy):
        xp = array_namespace(dy)
        y = self._y
        return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


@register_layer
class Step(Layer):
    """Heaviside step ``y = 1 if x >= 0 else 0``: the perceptron's threshold.

    Its true derivative is zero almost everywhere, which would stop all learning. ``backward`` passes
    ``dy`` straight through instead, so SGD on ``1/2 (t - y)^2`` becomes Rosenblatt's perceptron rule
    ``w += lr (t - y) x``.
    """

    keeps_shape = True

    def forward(self, x, training=False):
        xp = array_namespace(x)
        return xp.astype(x >= 0.0, x.dtype)

    def backward(self, dy):
        return dy


@register_layer
class Identity(Layer):
    """``y = x`` (a linear output, as in the Wekinator network of the seeds)."""

    keeps_shape = True

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


def softmax(x, axis: int = -1):
    """Numerically stable softmax: ``exp(x - max(x)) / sum(exp(x - max(x)))``."""
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    """``x - logsumexp(x)``, computed with the max shift (the standard has no logsumexp)."""
    xp = array_namespace(x)
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "leaky_relu": LeakyReLU,
               "softmax": Softmax, "step": Step, "identity": Identity}
