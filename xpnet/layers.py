"""Layers with parameters and shape plumbing: the ``Layer`` protocol, ``Dense`` and ``Flatten``.

Each layer keeps what its backward pass needs from its forward pass, so ``forward`` and ``backward``
sit side by side and read like the equations:

    forward:   y = x W + b                       (x: (batch, in), W: (in, out), b: (out,))
    backward:  dW = x^T dy,  db = sum_batch dy,  dx = dy W^T

The namespace ``xp`` always comes from the arrays, so the same code runs on every Array API library.
"""

from __future__ import annotations

from array_api_compat import array_namespace, is_writeable_array

from . import init as initializers


class Layer:
    """Base class: ``forward(x, training=False) -> y`` and ``backward(dy) -> dx``.

    ``params`` and ``grads`` map names to arrays (empty for layers without weights). ``build`` makes the
    parameters on a device; ``input_grad`` is turned off by ``Sequential`` for the first layer with
    weights, whose input gradient nobody needs.
    """

    params: dict
    grads: dict
    input_grad: bool = True

    def __init__(self):
        self.params = {}
        self.grads = {}

    def build(self, device, rng, dtype="float32") -> None:
        """Create the parameters on ``device`` from the host generator ``rng`` (no-op without weights)."""

    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serializable (used by ``save``/``load``)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer ``y = x @ W + b``.

    ``W`` has shape ``(in_features, out_features)``, ``b`` shape ``(out_features,)``. ``init`` is one of
    ``"lecun_normal"`` (default; std 1/sqrt(in), the seeds' rule), ``"glorot_uniform"``, ``"he_normal"``,
    ``"zeros"`` or a callable ``f(shape, rng, device, dtype)``. Biases start at zero.

        >>> layer = Dense(784, 200)        # params["W"]: (784, 200), params["b"]: (200,)
    """

    def __init__(self, in_features: int, out_features: int, init="lecun_normal", bias: bool = True):
        super().__init__()
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"Dense: {name} must be a positive int, got {n!r}")
        self.in_features, self.out_features = in_features, out_features
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self._init = initializers.get(init)
        self.bias = bias
        self._x = None

    def build(self, device, rng, dtype="float32") -> None:
        self.params["W"] = self._init((self.in_features, self.out_features), rng, device, dtype)
        if self.bias:
            self.params["b"] = initializers.zeros((self.out_features,), rng, device, dtype)

    def forward(self, x, training=False):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Dense({self.in_features}, {self.out_features}) expects input of shape "
                             f"(batch, {self.in_features}), got {tuple(x.shape)}")
        self._x = x
        y = x @ self.params["W"]
        if self.bias:
            if is_writeable_array(y):
                y += self.params["b"]  # y is our fresh product: no second (batch, out) array
            else:
                y = y + self.params["b"]
        return y

    def backward(self, dy):
        xp = array_namespace(dy)
        self.grads.clear()  # drop the last step's gradients first: the new ones can reuse their memory
        self.grads["W"] = self._x.T @ dy
        if self.bias:
            self.grads["b"] = xp.sum(dy, axis=0)
        return dy @ self.params["W"].T if self.input_grad else None

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "init": self.init, "bias": self.bias}


class Flatten(Layer):
    """Reshape any input ``(batch, d1, d2, ...)`` to ``(batch, d1*d2*...)``, like the seeds' ``ravel``."""

    def forward(self, x, training=False):
        xp = array_namespace(x)
        self._shape = x.shape
        return xp.reshape(x, (x.shape[0], -1))

    def backward(self, dy):
        return array_namespace(dy).reshape(dy, self._shape)
