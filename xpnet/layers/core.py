"""Layers with parameters and shape plumbing: ``Dense``, ``Flatten`` and ``Reshape``.

Each layer keeps what its backward pass needs from its forward pass, so ``forward`` and ``backward``
sit side by side and read like the equations:

    forward:   y = x W + b                       (x: (..., in), W: (in, out), b: (out,))
    backward:  dW = x^T dy,  db = sum_rows dy,  dx = dy W^T

``Dense`` takes any leading axes, as ``torch.nn.Linear``: a sequence's ``(batch, T, in)`` is ``batch * T``
rows of ``in`` (one matrix product over all of them, both ways).

The namespace ``xp`` always comes from the arrays, so the same code runs on every Array API library.
"""

from __future__ import annotations

import math

from array_api_compat import is_writeable_array

from .. import backend
from .. import init as initializers
from ..arguments import check_count, is_count
from ..backend import namespace as array_namespace
from ..inplace import add_
from .base import Layer, register_layer


@register_layer
class Dense(Layer):
    """Fully connected layer ``y = x @ W + b`` on the last axis: ``(..., in) -> (..., out)``.

    ``W`` has shape ``(in_features, out_features)``, ``b`` shape ``(out_features,)``. ``init`` is one of
    ``"lecun_normal"`` (default; std 1/sqrt(in), the seeds' rule), ``"glorot_uniform"``, ``"he_normal"``,
    ``"zeros"``, ``"normal(std=0.02)"`` (:func:`xpnet.init.normal`, GPT-2's) or a callable
    ``f(shape, rng, device, dtype)``. Biases start at zero.

        >>> layer = Dense(784, 200)        # params["W"]: (784, 200), params["b"]: (200,)
    """

    sgd = None  # a plain SGD whose step backward takes on W and b itself: fit sets it (train/inbackward.py)

    def __init__(self, in_features: int, out_features: int, init="lecun_normal", bias: bool = True):
        super().__init__()
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            check_count(f"Dense: {name}", n, 1, "a positive int")
        self.in_features, self.out_features = in_features, out_features
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self._init = initializers.get(init)
        self.bias = bias
        self._x = None

    def param_shapes(self):
        shapes = {"W": (self.in_features, self.out_features)}
        if self.bias:
            shapes["b"] = (self.out_features,)
        return shapes

    def build(self, device, rng, dtype="float32", init=True) -> None:
        draw = self._init if init else initializers.zeros  # zeros cost no draw and leave rng as it is
        self.params["W"] = draw((self.in_features, self.out_features), rng, device, dtype)
        if self.bias:
            self.params["b"] = initializers.zeros((self.out_features,), rng, device, dtype)

    def fixed_input_shape(self):
        return (self.in_features,)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) < 2 or shape[-1] != self.in_features:
            raise ValueError(f"Dense({self.in_features}, {self.out_features}) expects input of shape "
                             f"(batch, ..., {self.in_features}), got {shape}")
        return (*shape[:-1], self.out_features)

    def forward(self, x, training=False):
        self.compute_output_shape(x.shape)
        # More than 2 axes: one (rows, in) matrix, so that both products are one BLAS call each (NumPy loops
        # over the leading axis of a 3-D matmul: 1.09 ms against 1.00 forward, 1.36 against 1.02 for dx at
        # (12, 64, 128) x (128, 512), float32). A 2-D x takes no reshape at all.
        self._shape = x.shape
        if x.ndim > 2:
            x = array_namespace(x).reshape(x, (-1, self.in_features))
        self._x = x
        y = backend.dispatch("matmul", matmul, x, self.params["W"])
        if self.bias:
            if is_writeable_array(y):
                y += self.params["b"]  # y is our fresh product: no second (batch, out) array
            else:
                y = y + self.params["b"]
        return y if len(self._shape) == 2 else array_namespace(y).reshape(y, (*self._shape[:-1], self.out_features))

    def backward(self, dy):
        self.grads.clear()  # drop the last step's gradients first: the new ones can reuse their memory
        x = self.saved("_x")  # (rows, in): every leading axis is summed over by the products and the bias sum
        xp = array_namespace(dy)
        if dy.ndim > 2:
            dy = xp.reshape(dy, (-1, self.out_features))
        # dx first: with the step taken here (below), W is about to move
        dx = backend.dispatch("matmul", matmul, dy, self.params["W"].T) if self.input_grad else None
        if self.sgd is None:
            self.grads["W"] = _matmul_tn(x, dy)
            if self.bias:
                self.grads["b"] = xp.sum(dy, axis=0)
        else:  # plain SGD's step taken here, without storing dW (fit sets self.sgd)
            backend.dispatch("sgd_dense", sgd_dense, self.params["W"], self.params.get("b"), x, dy, self.sgd.lr)
        if dx is None or len(self._shape) == 2:
            return dx
        return xp.reshape(dx, self._shape)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "init": self.init, "bias": self.bias}

    @classmethod
    def from_config(cls, config):
        """Like ``Dense(**config)``, except that an initializer saved by name only (a custom function,
        which a file cannot hold) is kept by that name, and a later ``build(init=True)`` says so."""
        name = config.get("init", "lecun_normal")
        if isinstance(name, str) and not initializers.is_known(name):
            config = {**config, "init": saved_by_name(name)}
        return cls(**config)


@register_layer
class Flatten(Layer):
    """Reshape any input ``(batch, d1, d2, ...)`` to ``(batch, d1*d2*...)``, like the seeds' ``ravel``."""

    example_input_shape = (28, 28)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape:
            raise ValueError(f"{self!r} expects input of shape (batch, ...), got ()")
        return (shape[0], math.prod(shape[1:]))

    def forward(self, x, training=False):
        xp = array_namespace(x)
        self._shape = x.shape
        return xp.reshape(x, (x.shape[0], -1))

    def backward(self, dy):
        return array_namespace(dy).reshape(dy, self._shape)


@register_layer
class Reshape(Layer):
    """Give each sample the shape ``shape``, keeping the batch axis: ``(batch, ...) -> (batch, *shape)``.

    One entry of ``shape`` may be -1 (inferred from the rest, as in ``reshape``). Flat MNIST rows become
    images for a convolution with ``Reshape((1, 28, 28))``.

        >>> Reshape((1, 28, 28))            # (N, 784) -> (N, 1, 28, 28)
    """

    example_input_shape = (784,)

    def __init__(self, shape):
        super().__init__()
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if (not dims or not all(is_count(d, -1) and d != 0 for d in dims)
                or dims.count(-1) > 1):
            raise ValueError(f"Reshape: shape is one sample's shape, a tuple of positive ints with at most one "
                             f"-1 (inferred), such as (1, 28, 28); got {shape!r}")
        self.shape = dims

    def fixed_input_shape(self):
        # the flat rows of its size, which xpnet feeds it (any layout of that size would do as well)
        return None if -1 in self.shape else (math.prod(self.shape),)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        size, known = math.prod(shape[1:]), math.prod(d for d in self.shape if d != -1)
        if not shape or (size % known if -1 in self.shape else size != known):
            raise ValueError(f"{self!r} cannot hold a sample of shape {shape[1:]}; the sizes must have the same "
                             f"product")
        return (shape[0], *(size // known if d == -1 else d for d in self.shape))

    def forward(self, x, training=False):
        xp = array_namespace(x)
        self._shape = x.shape
        try:
            return xp.reshape(x, (x.shape[0], *self.shape))
        except (ValueError, TypeError, RuntimeError) as exc:  # each library words it its own way
            raise ValueError(f"{self!r} cannot hold a sample of shape {tuple(x.shape[1:])} "
                             f"({type(exc).__name__}: {exc}); the sizes must have the same product") from None

    def backward(self, dy):
        return array_namespace(dy).reshape(dy, self._shape)

    def get_config(self):
        return {"shape": list(self.shape)}


def matmul(a, b):
    """``a @ b`` (the backend's own way where it has one: NumPy cuts large products over its threads)."""
    return a @ b


def _matmul_tn(x, dy):
    """``x.T @ dy``: the backend's own way where it has a faster one (NumPy's BLAS for one row), else this.

    One sample: ``x.T @ dy`` is an outer product, which NumPy's matmul does not send to BLAS (x.T's
    strides are not "blasable"); the broadcast product gives the same numbers (one product per entry,
    nothing summed) at a third of that time on 784x200, the BLAS call of the NumPy backend at a sixth.
    """
    fast = backend.routine(array_namespace(x), "matmul_tn")
    out = None if fast is None else fast(x, dy)
    if out is not None:
        return out
    return x.T * dy if x.shape[0] == 1 else x.T @ dy


def sgd_dense(W, b, x, dy, lr: float):
    """Plain SGD's step on a Dense layer inside its backward pass, ``W -= lr x^T dy`` and ``b -= lr sum_rows
    dy`` (``b`` may be ``None``), in the parameters' memory (writeable arrays): the operations of
    ``SGD.step`` on the gradients backward would have stored, so the same bits. The backend's own way where
    it has one (NumPy: for one row, a BLAS rank-1 update and no reduction)."""
    add_(W, _matmul_tn(x, dy) * (-lr))
    if b is not None:
        add_(b, array_namespace(dy).sum(dy, axis=0) * (-lr))


def saved_by_name(name: str, layer: str = "Dense"):
    """The stand-in for an initializer that a file kept by ``name`` only (a function of the user's): it keeps
    the name for ``get_config`` and refuses to draw, naming ``layer`` (Dense, Conv2D) in the error."""

    def unavailable(shape, rng, device, dtype="float32"):
        raise ValueError(f"{layer}: the initializer {name!r} was a custom function, which a saved file keeps by "
                         f"name only; make the layer again with init=<that function> to draw new weights")

    unavailable.__name__ = name
    return unavailable
