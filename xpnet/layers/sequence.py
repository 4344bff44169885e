"""The layers of a transformer's sequences besides attention: ``Embedding``, ``PositionalEmbedding``, ``LayerNorm``.

Activations are ``(B, T, dim)``: B sequences of T positions, ``dim`` numbers each; token ids are ``(B, T)``
integers. Each layer keeps what its backward pass needs, and the two read like the equations (sums over
``(b, t)`` run over every leading axis; ``N = dim``):

    Embedding            y[b, t] = W[ids[b, t]]            dW[v] = sum of dy[b, t] over the (b, t) with ids[b, t] = v
    PositionalEmbedding  y[b, t] = x[b, t] + W[t]          dW[t] = sum_b dy[b, t] (t < T; the rest 0),  dx = dy
    LayerNorm            xhat = (x - mean(x)) * rstd,  rstd = 1 / sqrt(var(x) + eps)   (last axis; var biased)
                         y = gamma * xhat + beta           dgamma = sum dy * xhat,  dbeta = sum dy,
                         dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * gamma

The last line is ``(1/N) rstd (N dxhat - sum(dxhat) - xhat sum(dxhat xhat))`` with the sums as means: it needs
only ``xhat`` and ``rstd`` from the forward pass.
"""

from __future__ import annotations

import math

from array_api_compat import device as device_of

from .. import backend
from .. import init as initializers
from ..arguments import check_count, is_number
from ..backend import namespace as array_namespace
from .base import Layer, register_layer
from .core import saved_by_name

GPT2_INIT = "normal(std=0.02)"  # nanoGPT's and GPT-2's for both embeddings (torch's own default is N(0, 1))


def scatter_add(ids, values, rows: int):
    """``out[r] = sum of values[i] over the i with ids[i] == r``, ``out`` of shape ``(rows, dim)``: Embedding's
    gradient (``ids`` (n,) integers, ``values`` (n, dim)); a row no id names is 0, repeated ids add up.

    The standard has no scatter (``out[ids] += values`` keeps one of each repeated id's values), so the
    generic lines multiply by the one-hot matrix ``[ids[i] == r]`` (rows, n): exact (each product is a
    value times 1 or 0), 5 operations whatever the size, but ``rows * n`` numbers of memory (154 MB for
    GPT-2's 50257 tokens and 768 ids in float32). The other way round, sorting and summing runs of equal
    ids, needs a scatter too, or prefix sums whose differences lose the small sums' digits. NumPy, torch,
    JAX and CuPy add in place through their own scatter instead (``backend.routine``; each tested against
    these lines).
    """
    fast = backend.routine(array_namespace(values), "scatter_add")
    return one_hot_scatter_add(ids, values, rows) if fast is None else fast(ids, values, rows)


def one_hot_scatter_add(ids, values, rows: int):
    """:func:`scatter_add` in the standard's own operations: ``onehot(ids)^T @ values``."""
    xp = array_namespace(values)
    hits = xp.arange(rows, dtype=ids.dtype, device=device_of(ids))[:, None] == ids  # (rows, n)
    return xp.astype(hits, values.dtype) @ values


def _lead_axes(a) -> tuple:
    return tuple(range(a.ndim - 1))


class _Table(Layer):
    """A ``(rows, dim)`` weight drawn by ``init``, kept by name in the config as Dense keeps its own."""

    _rows_name = "rows"

    def __init__(self, rows: int, dim: int, init):
        super().__init__()
        name = type(self).__name__
        check_count(f"{name}: {self._rows_name}", rows, 1, "a positive int")
        check_count(f"{name}: dim", dim, 1, "a positive int")
        self._rows, self.dim = rows, dim
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self._init = initializers.get(init)

    def param_shapes(self):
        return {"W": (self._rows, self.dim)}

    def build(self, device, rng, dtype="float32", init=True) -> None:
        draw = self._init if init else initializers.zeros  # zeros cost no draw and leave rng as it is
        self.params["W"] = draw((self._rows, self.dim), rng, device, dtype)

    def get_config(self):
        return {self._rows_name: self._rows, "dim": self.dim, "init": self.init}

    @classmethod
    def from_config(cls, config):
        """As Dense's: an initializer saved by name only (a function of yours) keeps the name and refuses to draw."""
        name = config.get("init", GPT2_INIT)
        if isinstance(name, str) and not initializers.is_known(name):
            config = {**config, "init": saved_by_name(name, cls.__name__)}
        return cls(**config)


@register_layer
class Embedding(_Table):
    """A vector of ``dim`` numbers per token: integer ids ``(B, T)`` (any shape) -> ``(B, T, dim)``, as
    ``torch.nn.Embedding``. ``params["W"]`` is ``(num_embeddings, dim)``, drawn by ``init`` (Dense's choices;
    by default ``"normal(std=0.02)"``, GPT-2's and nanoGPT's; torch's own default is N(0, 1)).

    As a model's first layer it takes int64 ids (:attr:`input_dtype`): ``fit``, ``evaluate`` and ``predict``
    keep them integers, and refuse floats and ids outside ``0..num_embeddings-1`` (from the range they read
    anyway: nothing per step). ``forward`` itself checks the dtype only: a range check there would read the
    ids back, a sync per step on a GPU. Out-of-range ids given to it directly raise NumPy's, strict's or torch's
    ``IndexError`` on the CPU; JAX returns NaN rows. Ids have no gradient: ``backward`` fills ``grads["W"]``
    and returns ``None``.

        >>> Embedding(65, 128)        # 65 characters, 128 numbers each: (B, T) ids -> (B, T, 128)
    """

    input_dtype = "int64"
    example_input_shape = (64,)  # a window of 64 ids
    _rows_name = "num_embeddings"

    def __init__(self, num_embeddings: int, dim: int, init=GPT2_INIT):
        super().__init__(num_embeddings, dim, init)
        self.num_embeddings = num_embeddings
        self._shared = None  # dW from another use of W (TiedDense), added by the next backward

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape:
            raise ValueError(f"{self!r} expects ids of shape (batch, ...), got ()")
        return (*shape, self.dim)

    def check_input_values(self, low, high) -> None:
        if low < 0 or high >= self.num_embeddings:
            raise ValueError(f"{self!r} takes ids from 0 to {self.num_embeddings - 1}, got ids from {low:g} to "
                             f"{high:g}; encode the tokens with the vocabulary the model was made for, or make "
                             f"the Embedding with num_embeddings >= {math.floor(high) + 1}")

    def forward(self, ids, training=False):
        xp = array_namespace(ids)
        self.compute_output_shape(ids.shape)
        if not xp.isdtype(ids.dtype, "integral"):
            dtype = str(ids.dtype).rsplit(".", 1)[-1]  # torch.float32, array_api_strict.float32: float32
            raise TypeError(f"{self!r} takes integer token ids, got {dtype}; pass them as int64 "
                            f"(ids.astype(np.int64))")
        self._ids = xp.reshape(ids, (-1,))
        self._shared = None
        y = xp.take(self.params["W"], self._ids, axis=0)
        return xp.reshape(y, (*ids.shape, self.dim))

    def backward(self, dy):
        self.grads.clear()
        values = array_namespace(dy).reshape(dy, (-1, self.dim))
        dW = scatter_add(self._ids, values, self.num_embeddings)
        self.grads["W"] = dW if self._shared is None else dW + self._shared
        self._shared = None
        return None  # integers have no gradient

    def add_to_gradient(self, dW) -> None:
        """Add ``dW`` ``(num_embeddings, dim)``, the gradient of another use of ``W`` in the same forward pass (a
        :class:`~xpnet.layers.TiedDense` head), to the ``grads["W"]`` of this layer's next ``backward``."""
        self._shared = dW if self._shared is None else self._shared + dW


@register_layer
class PositionalEmbedding(_Table):
    """A learned vector per position, added to a sequence: ``y[b, t] = x[b, t] + W[t]`` for ``x`` (B, T, dim)
    with ``T <= max_len`` (GPT-2's ``wpe``). ``params["W"]`` is ``(max_len, dim)``, drawn as Embedding's.

        >>> PositionalEmbedding(64, 128)    # windows of up to 64 positions
    """

    _rows_name = "max_len"

    def __init__(self, max_len: int, dim: int, init=GPT2_INIT):
        super().__init__(max_len, dim, init)
        self.max_len = max_len

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) < 3 or shape[-1] != self.dim:
            raise ValueError(f"{self!r} expects input of shape (batch, T, {self.dim}), got {shape}")
        if shape[-2] is not None and shape[-2] > self.max_len:
            raise ValueError(f"{self!r} got {shape[-2]} positions (input of shape {shape}), more than its "
                             f"max_len={self.max_len}; cut the windows to at most {self.max_len}, or make the layer "
                             f"with max_len >= {shape[-2]}")
        return shape

    def forward(self, x, training=False):
        self.compute_output_shape(x.shape)
        return x + self.params["W"][:x.shape[-2], :]

    def backward(self, dy):
        xp = array_namespace(dy)
        self.grads.clear()
        used = xp.sum(dy, axis=_lead_axes(dy)[:-1])  # (T, dim)
        rest = self.max_len - used.shape[0]
        if rest:  # positions past T got nothing: their rows of the gradient are 0
            used = xp.concat([used, xp.zeros((rest, self.dim), dtype=dy.dtype, device=device_of(dy))], axis=0)
        self.grads["W"] = used
        return dy if self.input_grad else None


@register_layer
class LayerNorm(Layer):
    """Normalize each vector over its last axis, then scale and shift: ``y = gamma * xhat + beta``, as
    ``torch.nn.LayerNorm(dim, eps)`` (the biased variance, ``eps`` inside the square root). ``params["gamma"]``
    (ones) and ``params["beta"]`` (zeros) are ``(dim,)``; input ``(..., dim)``, any leading axes.

        >>> LayerNorm(128)
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        check_count("LayerNorm: dim", dim, 1, "a positive int (the width of the layer before it)")
        if not (is_number(eps) and math.isfinite(eps) and eps > 0.0):
            raise ValueError(f"LayerNorm: eps must be a small positive number (default 1e-5), got {eps!r}")
        self.dim, self.eps = dim, float(eps)

    def param_shapes(self):
        return {"gamma": (self.dim,), "beta": (self.dim,)}

    def build(self, device, rng, dtype="float32", init=True) -> None:
        # constants, not draws: the same with init=False, and rng is never touched
        xp, dt = device.xp, device.dtype(dtype)
        self.params["gamma"] = xp.ones((self.dim,), dtype=dt, device=device.native)
        self.params["beta"] = xp.zeros((self.dim,), dtype=dt, device=device.native)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) < 2 or shape[-1] != self.dim:
            raise ValueError(f"{self!r} expects input of shape (batch, ..., {self.dim}), got {shape}")
        return shape

    def forward(self, x, training=False):
        self.compute_output_shape(x.shape)
        run = backend.routine(array_namespace(x), "layer_norm") or layer_norm
        y, self._xhat, self._rstd = run(x, self.params["gamma"], self.params["beta"], self.eps)
        return y

    def backward(self, dy):
        self.grads.clear()
        run = backend.routine(array_namespace(dy), "layer_norm_backward") or layer_norm_backward
        dx, self.grads["gamma"], self.grads["beta"] = run(dy, self._xhat, self._rstd, self.params["gamma"],
                                                          self.input_grad)
        return dx

    def get_config(self):
        return {"dim": self.dim, "eps": self.eps}


def layer_norm(x, gamma, beta, eps: float):
    """LayerNorm's forward over the last axis: ``(y, xhat, rstd)``, ``xhat`` and ``rstd`` kept for the backward
    (``rstd`` with the last axis kept, of length 1). The backend's ``layer_norm`` routine computes the same."""
    xp = array_namespace(x)
    centred = x - xp.mean(x, axis=-1, keepdims=True)
    rstd = 1.0 / xp.sqrt(xp.mean(centred * centred, axis=-1, keepdims=True) + eps)
    xhat = centred * rstd
    return xhat * gamma + beta, xhat, rstd


def layer_norm_backward(dy, xhat, rstd, gamma, input_grad: bool = True):
    """LayerNorm's backward: ``(dx, dgamma, dbeta)`` (``dx`` ``None`` without ``input_grad``)."""
    xp = array_namespace(dy)
    dgamma, dbeta = xp.sum(dy * xhat, axis=_lead_axes(dy)), xp.sum(dy, axis=_lead_axes(dy))
    if not input_grad:
        return None, dgamma, dbeta
    dxhat = dy * gamma
    dx = rstd * (dxhat - xp.mean(dxhat, axis=-1, keepdims=True) - xhat * xp.mean(dxhat * xhat, axis=-1, keepdims=True))
    return dx, dgamma, dbeta
