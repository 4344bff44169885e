"""Layers that regularize training and behave differently in it: ``Dropout``, ``BatchNorm1d`` and ``BatchNorm2d``.

Both follow PyTorch's semantics, so weights and results carry over:

    Dropout(p), training:   y = x * m / (1 - p),   m_ij ~ Bernoulli(1 - p)    (inverted dropout)
                evaluation: y = x
    BatchNorm1d, training:  y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta   (batch statistics,
                            biased variance); running_* <- (1 - momentum) running_* + momentum * batch_*,
                            with the unbiased variance
                evaluation: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

``training`` comes from the model: ``fit`` passes True, ``predict`` and ``evaluate`` (validation too) False.
"""

from __future__ import annotations

import functools
import math

from array_api_compat import array_namespace

from .. import backend
from ..arguments import check_count, is_count, is_number
from .base import Layer, register_layer

_KEY_LIMIT = 2**63  # keys are 63-bit: a JSON number every reader takes, and an int64 for NumPy


@register_layer
class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014; torch.nn.Dropout): zero each input with probability ``p``
    while training and scale the rest by ``1 / (1 - p)``, so evaluation is the identity.

    The masks come from a counter-based stream: draw ``i`` depends only on the layer's ``key`` (63 bits,
    taken from the model's seed in ``build``) and ``i``. So a seed reproduces a run, and ``rng_state()``
    (two ints) is all a checkpoint needs to replay the masks exactly. NumPy, array-api-strict and CuPy
    share one generator (NumPy's, on the host; CuPy gets each mask in one copy), so their masks are the
    same; PyTorch and JAX draw with their own generators, other masks from the same seed.

        >>> model = Sequential([Dense(784, 512), ReLU(), Dropout(0.2), Dense(512, 10)], seed=0)
    """

    keeps_shape = True

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_rate("Dropout: p", p)
        self._stream = MaskStream("Dropout")
        self._mask = None

    def build(self, device, rng, dtype="float32", init=True) -> None:
        # Also with init=False: a model built to load weights into draws the same masks as the saved one
        # did from its start (a checkpoint then sets the counter with set_rng_state).
        self._stream.build(rng)

    def forward(self, x, training=False):
        if not training or self.p == 0.0:
            self._mask = None
            return x
        y, self._mask = backend.dispatch("dropout", dropout, x, self._stream.uniform(x, x.shape), self.p)
        return y

    def backward(self, dy):
        if not self.input_grad:
            return None
        return dy if self._mask is None else backend.dispatch("dropout_backward", dropout_backward, dy, self._mask)

    def rng_state(self) -> dict:
        """``{"key": int, "counter": int}``: the random stream and how many masks it has drawn (JSON)."""
        return self._stream.state()

    def set_rng_state(self, state: dict) -> None:
        """Continue the stream ``state`` (from :meth:`rng_state`): the next masks are the ones it would draw."""
        self._stream.set_state(state)

    def get_config(self):
        return {"p": self.p}


def check_rate(what: str, p) -> float:
    """``p`` as a float if it is a dropout probability (0 <= p < 1), else a ``ValueError`` saying so."""
    # (a NaN fails the range test too)
    if not (is_number(p) and 0.0 <= p < 1.0):
        raise ValueError(f"{what} is the probability of zeroing an input and must be a number with "
                         f"0 <= p < 1, got {p!r}")
    return float(p)


class MaskStream:
    """The inverted-dropout masks of one layer (``Dropout``, and ``MultiHeadAttention`` on its attention
    weights), from a counter-based stream: mask ``i`` depends only on the 63-bit ``key`` (taken from the
    model's seed in :meth:`build`) and ``i``, drawn through :func:`xpnet.backend.random_uniform`. So a seed
    reproduces a run and :meth:`state` (two ints) is all a checkpoint needs to replay the masks exactly.
    ``owner`` names the layer in the errors."""

    def __init__(self, owner: str):
        self.owner, self.key, self.counter = owner, None, 0

    def build(self, rng) -> None:
        self.key, self.counter = _stream_key(rng), 0

    def mask(self, like, shape, p: float):
        """The next mask of ``shape``: 0 with probability ``p``, else ``1 / (1 - p)``, in ``like``'s dtype and
        on its device (keeping the scale, the backward is one product)."""
        return array_namespace(like).astype(self.uniform(like, shape) >= p, like.dtype) * (1.0 / (1.0 - p))

    def uniform(self, like, shape):
        """The next draw of the stream: uniform numbers in [0, 1) of ``shape`` on ``like``'s device, float32
        whatever ``like``'s dtype (the mask needs only the comparison, and both dtypes get the same masks)."""
        if self.key is None:
            raise RuntimeError(f"{self.owner}: the layer has no random stream yet; build it first "
                               f"(layer.build(device, rng)) or put it in a Sequential, which does")
        u = backend.random_uniform(backend.device_of(like), self.key, self.counter, shape, "float32")
        self.counter += 1
        return u

    def state(self) -> dict:
        return {"key": self.key, "counter": self.counter}

    def set_state(self, state: dict) -> None:
        where = f"{self.owner}.set_rng_state"
        if not isinstance(state, dict) or set(state) != {"key", "counter"}:
            raise ValueError(f"{where}: expected a dict with the keys 'key' and 'counter' "
                             f"(from rng_state()), got {state!r}")
        key, counter = state["key"], state["counter"]
        for name, value, limit in (("key", key, _KEY_LIMIT), ("counter", counter, None)):
            if not is_count(value) or (limit and value >= limit):
                raise ValueError(f"{where}: {name} must be an int "
                                 f"{'in [0, 2**63)' if limit else '>= 0'}, got {value!r}")
        self.key, self.counter = key, counter


def dropout(x, u, p: float):
    """``(x * mask, mask)`` with ``mask = [u >= p] / (1 - p)`` in x's dtype, for uniform numbers ``u`` of x's
    shape. The mask keeps its 1/(1-p) so that the backward pass is one product."""
    mask = array_namespace(x).astype(u >= p, x.dtype) * (1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, mask):
    """``dy * mask``."""
    return dy * mask


def _stream_key(rng) -> int:
    """A 63-bit key from the host generator ``rng`` that leaves its stream where it was.

    ``spawn`` takes the next child of the generator's ``SeedSequence`` and draws nothing from ``rng``
    itself, so adding a Dropout changes neither the weights of the layers built after it nor the
    shuffling: a model with dropout and one without start from the same weights with the same seed.
    """
    try:
        child = rng.spawn(1)[0]
    except (TypeError, ValueError, AttributeError):  # a generator made without a seed sequence
        return int(rng.integers(0, _KEY_LIMIT))
    return int(child.integers(0, _KEY_LIMIT))


class _BatchNorm(Layer):
    """The statistics of both batch norms: per feature (``BatchNorm1d``) or per channel (``BatchNorm2d``),
    over every other axis (``_axes``); ``_view`` is how a ``(num_features,)`` vector broadcasts."""

    _axes: tuple = (0,)
    _ndim: int = 2

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        name = type(self).__name__
        check_count(f"{name}: num_features", num_features, 1, f"a positive int (the width of the layer before "
                    f"it{', its channels' if self._ndim == 4 else ''})")
        if not (is_number(momentum) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"{name}: momentum must be a number in [0, 1] (PyTorch's default is 0.1), "
                             f"got {momentum!r}")
        if not (is_number(eps) and math.isfinite(eps) and eps > 0.0):
            raise ValueError(f"{name}: eps must be a small positive number (default 1e-5), got {eps!r}")
        self.num_features, self.momentum, self.eps = num_features, float(momentum), float(eps)
        self._cache = None

    def param_shapes(self):
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def build(self, device, rng, dtype="float32", init=True) -> None:
        # Constants, not draws: the same with init=False, and rng is never touched.
        xp, dt, shape = device.xp, device.dtype(dtype), (self.num_features,)
        # Four separate arrays: an optimizer that updates gamma in place must not move running_var.
        self.params["gamma"] = xp.ones(shape, dtype=dt, device=device.native)
        self.params["beta"] = xp.zeros(shape, dtype=dt, device=device.native)
        self.buffers["running_mean"] = xp.zeros(shape, dtype=dt, device=device.native)
        self.buffers["running_var"] = xp.ones(shape, dtype=dt, device=device.native)

    def _view(self, xp, v):
        return v if self._ndim == 2 else xp.reshape(v, (self.num_features, 1, 1))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != self._ndim or shape[1] != self.num_features:
            want = "(batch, {0})" if self._ndim == 2 else "(batch, {0}, height, width)"
            raise ValueError(f"{self.__class__.__name__}({self.num_features}) expects input of shape "
                             f"{want.format(self.num_features)}, got {shape}" + self._hint(len(shape)))
        return shape

    def forward(self, x, training=False):
        self.compute_output_shape(x.shape)
        xp = array_namespace(x)
        view = functools.partial(self._view, xp)
        if training:
            n = math.prod(x.shape) // self.num_features  # values per feature: rows (x pixels)
            if n < 2:
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel when training, "
                                 f"got input of shape {tuple(x.shape)}: the variance of one value is undefined. "
                                 f"In fit, a last batch of 1 row comes from n_samples % batch_size == 1: change "
                                 f"batch_size, or drop a sample")
            mean = xp.mean(x, axis=self._axes)
            xc = x - view(mean)
            var = xp.mean(xc * xc, axis=self._axes)  # biased: what normalizes this batch
            m = self.momentum
            self.buffers["running_mean"] = (1.0 - m) * self.buffers["running_mean"] + m * mean
            # the running estimate is of the population's variance: unbiased, n / (n - 1) (as PyTorch)
            self.buffers["running_var"] = (1.0 - m) * self.buffers["running_var"] + (m * n / (n - 1)) * var
        else:
            xc = x - view(self.buffers["running_mean"])
            var = self.buffers["running_var"]
        inv_std = view(1.0 / xp.sqrt(var + self.eps))
        xhat = xc * inv_std
        self._cache = (xhat, inv_std, training)
        return xhat * view(self.params["gamma"]) + view(self.params["beta"])

    def backward(self, dy):
        """dbeta = sum dy, dgamma = sum dy * xhat, and with batch statistics (which depend on x)
        dx = gamma / (N sigma) * (N dy - dbeta - xhat dgamma); with running ones dx = gamma dy / sigma.
        N counts the values per feature: the rows, times the pixels for BatchNorm2d."""
        xp = array_namespace(dy)
        view = functools.partial(self._view, xp)
        xhat, inv_std, batch_statistics = self._cache
        self.grads.clear()
        self.grads["gamma"] = xp.sum(dy * xhat, axis=self._axes)
        self.grads["beta"] = xp.sum(dy, axis=self._axes)
        if not self.input_grad:
            return None
        scale = view(self.params["gamma"]) * inv_std
        if not batch_statistics:
            return dy * scale
        n = float(math.prod(dy.shape) // self.num_features)
        return (scale / n) * (n * dy - view(self.grads["beta"]) - xhat * view(self.grads["gamma"]))

    def get_config(self):
        return {"num_features": self.num_features, "momentum": self.momentum, "eps": self.eps}


@register_layer
class BatchNorm1d(_BatchNorm):
    """Batch normalization over the batch axis of ``(batch, num_features)`` inputs (Ioffe & Szegedy 2015,
    https://arxiv.org/abs/1502.03167), with torch.nn.BatchNorm1d's semantics and names.

    Training: ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the batch's mean and biased
    variance, and ``running = (1 - momentum) * running + momentum * batch`` for the mean and the
    unbiased variance. Evaluation uses ``running_mean`` and ``running_var`` instead.

    ``params``: ``gamma`` (ones) and ``beta`` (zeros), shape ``(num_features,)``. ``buffers``:
    ``running_mean`` (zeros) and ``running_var`` (ones), saved with the model, never trained.

        >>> model = Sequential([Dense(784, 256), BatchNorm1d(256), ReLU(), Dense(256, 10)], seed=0)
    """

    def fixed_input_shape(self):
        return (self.num_features,)

    def _hint(self, ndim):
        return " (BatchNorm1d takes 2-D input only; flatten first)" if ndim != 2 else ""


@register_layer
class BatchNorm2d(_BatchNorm):
    """Batch normalization of each channel of ``(batch, num_features, height, width)`` images, with
    torch.nn.BatchNorm2d's semantics and names: BatchNorm1d's equations, the statistics of channel ``c``
    taken over the batch *and* the pixels (``N * H * W`` values; the running variance's unbiased factor
    counts them too). Same ``params`` (``gamma``, ``beta``) and ``buffers`` (``running_mean``,
    ``running_var``), each of shape ``(num_features,)``.

        >>> model = Sequential([Conv2D(1, 32, 3), BatchNorm2d(32), ReLU(), ...], seed=0)
    """

    _axes = (0, 2, 3)
    _ndim = 4
    example_input_shape = (1, 28, 28)

    def _hint(self, ndim):
        return " (BatchNorm2d takes NCHW images; use BatchNorm1d after a Flatten)" if ndim == 2 else ""
