"""The ``Layer`` protocol and the layer registry that :func:`xpnet.load` rebuilds layers from.

A layer class registers itself with the decorator beside its definition (as Thinc's registry and Keras'
``register_keras_serializable`` do), so the registry never scans modules and a user's layer joins it the
same way::

    @xpnet.layers.register_layer
    class Doubler(xpnet.Layer):
        def forward(self, x, training=False): return 2 * x
        def backward(self, dy): return 2 * dy
"""

from __future__ import annotations


class Layer:
    """Base class: ``forward(x, training=False) -> y`` and ``backward(dy) -> dx``.

    ``params`` and ``grads`` map names to arrays (empty for layers without weights). ``buffers`` maps
    names to state that is saved with the model but not trained (BatchNorm's running statistics): the
    optimizer never sees it, the layer itself updates it in ``forward(x, training=True)``. ``build``
    makes the parameters and buffers on a device; ``input_grad`` is turned off by ``Sequential`` for the
    first layer with weights, whose input gradient nobody needs. A layer owns its weights: nothing else writes them but
    through ``params`` and ``buffers`` (which ``Sequential.load_state_dict`` fills after a
    ``build(..., init=False)``).

    A layer that draws random numbers while training (Dropout) also has ``rng_state() -> dict`` (JSON)
    and ``set_rng_state(state)``, for checkpoints; layers without randomness do not define them.
    """

    params: dict
    grads: dict
    buffers: dict
    input_grad: bool = True

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}

    def param_shapes(self) -> dict:
        """``{name: shape}`` of the parameters ``build`` makes, known before anything is allocated."""
        return {}

    def build(self, device, rng, dtype="float32", init: bool = True) -> None:
        """Create the parameters on ``device``, drawn from the host generator ``rng``.

        With ``init=False`` they are allocated without drawing (zeros, ``rng`` untouched): for weights
        that are loaded next. A no-op for layers without weights.
        """

    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serializable (used by ``save``/``load``)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """The layer ``get_config`` describes; raises ``TypeError``/``ValueError`` for a config it refuses."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


LAYERS: dict[str, type] = {}
"""Registered layer classes by class name: what :func:`xpnet.load` can rebuild."""


def register_layer(cls: type) -> type:
    """Let :func:`xpnet.load` rebuild layers of class ``cls`` (by its ``__name__``); use it as a decorator.

    ``cls.from_config(layer.get_config())`` must rebuild the layer, and the config must be JSON-serializable.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer: {cls!r} is not a subclass of xpnet.Layer")
    LAYERS[cls.__name__] = cls
    return cls
