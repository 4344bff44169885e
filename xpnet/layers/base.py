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

    A layer owns its shapes too: ``compute_output_shape`` and ``fixed_input_shape`` (with ``keeps_shape``),
    which ``summary()``, ``fit``'s checks, ``export_onnx`` and the ``xpnet`` command ask instead of knowing
    the layer classes.
    """

    params: dict
    grads: dict
    buffers: dict
    input_grad: bool = True
    keeps_shape: bool = False
    """True for a layer that takes input of any shape and gives output of that shape (the activations, Dropout):
    a model's input shape is then read from a layer after it."""
    example_input_shape: tuple | None = None
    """One sample's shape for an error to suggest when this layer comes first and does not fix the input's
    shape (Flatten: (28, 28); the image layers: (1, 28, 28))."""
    input_dtype: str | None = None
    """What this layer takes as a model's first layer: ``None``, numbers in the model's float dtype; ``"int64"``,
    integers (Embedding's token ids), which ``fit``, ``evaluate``, ``predict`` and ``export_onnx`` then keep as
    integers instead of casting them (:func:`model_input_dtype`)."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}

    def tie(self, layers) -> None:
        """Called by the :class:`~xpnet.Sequential` this layer is put in, with the model's layers, before they are
        built: where a layer uses another's weights (:class:`~xpnet.layers.TiedDense`), it finds that layer
        here. Nothing by default."""

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

    def saved(self, name: str):
        """What ``forward`` kept under ``name`` for ``backward``, handed over and no longer held: a step's
        activations are freed layer by layer as backward passes them, as PyTorch frees a graph's saved tensors,
        not kept into the next step's forward (the CNN preset at batch 256, 2 threads: 278 -> 232 MiB peak
        RSS, PyTorch 242). So backward runs once per forward; a second one is an error saying so."""
        value = getattr(self, name, None)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward: there is no forward pass to go back through: "
                               f"backward runs once after each forward (what forward keeps is freed as backward "
                               f"uses it, as in PyTorch); call forward again first")
        setattr(self, name, None)
        return value

    def __call__(self, x, training: bool = False):
        return self.forward(x, training)

    def compute_output_shape(self, input_shape: tuple) -> tuple | None:
        """The shape of ``forward``'s output for input of shape ``input_shape``, both with the batch axis first,
        as Keras' method of this name: ``Dense(784, 10)`` gives ``(None, 10)`` for ``(None, 784)`` (the batch
        axis, ``None`` or a number, passes through). With the batch axis, ``forward`` makes its check of the
        input through this method, so both refuse the same inputs with the same message: a ``ValueError``
        that names the layer and the shape.

        The default is the input's shape where ``keeps_shape`` is set, else ``None``: not known (``summary()``
        shows ``?`` from such a layer on). So a layer of your own gets no guessed shape, which would be wrong
        for one that changes it; define this method, or set ``keeps_shape = True``, to give it one.
        """
        return tuple(input_shape) if self.keeps_shape else None

    def fixed_input_shape(self) -> tuple | None:
        """One sample's shape (no batch axis) that this layer takes as a model's first layer, where it fixes one:
        ``Dense``: ``(in_features,)``; ``BatchNorm1d``: ``(num_features,)``; a ``Reshape`` without -1: flat rows
        of its size. ``None`` where more than one shape would do (a convolution takes any height and width)."""
        return None

    def check_input_values(self, low, high) -> None:
        """Raise ``ValueError`` when a model whose first layer this is gets inputs from ``low`` to ``high`` that
        it cannot take (Embedding: ids outside ``0..num_embeddings-1``). ``fit``, ``evaluate`` and ``predict``
        call it with the range they read from the data anyway, so it costs no pass and no sync of its own.
        By default anything goes."""

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


def input_layer(layers):
    """The layer that decides the input shape of a model of ``layers``: the first that does not keep every
    shape (``None`` when all do, as in a model of activations only)."""
    return next((layer for layer in layers if not layer.keeps_shape), None)


def model_input_dtype(layers) -> str | None:
    """The integer dtype a model of ``layers`` takes (its first layer's :attr:`~Layer.input_dtype`), or ``None``
    where it takes numbers in its own float dtype."""
    return layers[0].input_dtype if layers else None


def model_input_shape(layers) -> tuple | None:
    """One sample's shape (no batch axis) that a model of ``layers`` takes, as its layers tell it: the
    :meth:`~Layer.fixed_input_shape` of its :func:`input_layer`. ``None`` where they do not fix one (a model
    that starts with Flatten or a convolution takes more than one shape: ask for it)."""
    first = input_layer(layers)
    return None if first is None else first.fixed_input_shape()


def model_output_shapes(layers, input_shape) -> list:
    """Each layer's output shape (with the batch axis) for a model input of shape ``input_shape`` (with the batch
    axis): :meth:`~Layer.compute_output_shape` from layer to layer, ``None`` from a layer that does not tell its
    own on. A ``ValueError`` names the layer (by index) that does not take what it gets, and why."""
    shapes, shape = [], tuple(input_shape)
    for i, layer in enumerate(layers):
        if shape is not None:
            try:
                shape = layer.compute_output_shape(shape)
            except ValueError as exc:
                raise ValueError(f"layer {i}, {layer!r}, does not take input of shape {shape} "
                                 f"({type(exc).__name__}: {exc})") from None
            shape = None if shape is None else tuple(shape)
        shapes.append(shape)
    return shapes
