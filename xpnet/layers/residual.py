"""``Residual``: ``y = x + f(x)``, ``f`` a few layers applied in order (each half of a transformer block)::

    forward:   h_0 = x,   h_j = f_j(h_{j-1}),   y = x + h_n
    backward:  g_n = dy,  g_{j-1} = f_j'(g_j),  dx = dy + g_0

The skip passes ``dy`` through untouched; ``f``'s layers fill their own gradients on the way. The sublayers'
parameters, gradients and buffers are this layer's, keyed ``"<j>.<name>"`` (write-through, as a model's are
``"<i>.<name>"``), so a model's keys become ``"<i>.<j>.<name>"`` and everything that goes through
``model.parameters()`` (optimizers, saving, checkpoints) sees them with no change.
"""

from __future__ import annotations

from ..parameters import ParameterDict
from .base import LAYERS, Layer, input_layer, model_input_shape, model_output_shapes, register_layer


class _Gradients(ParameterDict):
    """The sublayers' gradients (keyed like the parameters), with a ``clear`` that empties each layer's own
    (``Sequential.to`` drops stale gradients that way; the mapping itself refuses deletion)."""

    def __init__(self, layers):
        super().__init__(layers, "grads", keys_from="params")
        self._layers = layers

    def clear(self):
        for layer in self._layers:
            layer.grads.clear()


@register_layer
class Residual(Layer):
    """A skip connection around ``layers``: ``y = x + f(x)`` with ``f`` the layers in order (kept as ``.layers``),
    as in a pre-norm transformer block (He et al. 2016, https://arxiv.org/abs/1512.03385).

    ``f`` must give output of its input's shape. The layers are built in order from the model's generator
    (the same weights as the same layers outside a Residual); ``params``, ``grads`` and ``buffers`` are theirs,
    keyed ``"<j>.<name>"``. Where a layer draws random numbers (Dropout), ``rng_state()`` holds theirs, keyed
    ``"<j>"``, so a checkpoint resumes them exactly.

        >>> block = Residual([LayerNorm(128), MultiHeadAttention(128, 4), Dropout(0.1)])
    """

    def __init__(self, layers):
        super().__init__()
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(f"Residual: layers is a non-empty list of xpnet Layers, f in y = x + f(x) (e.g. "
                             f"Residual([LayerNorm(64), MultiHeadAttention(64, 4)])); got {layers!r}")
        for j, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Residual: layer {j} is {layer!r}, not an xpnet Layer")
        self.layers = list(layers)
        self.keeps_shape = all(layer.keeps_shape for layer in self.layers)
        first = input_layer(self.layers)
        self.example_input_shape = None if first is None else first.example_input_shape
        self.input_grad = True

    @property
    def input_grad(self) -> bool:
        return self._input_grad

    @input_grad.setter
    def input_grad(self, value) -> None:
        # Sequential._link's rule, inside: with no dx wanted (the model's first layer with weights), f's layers
        # before its first one with weights need no backward, and that one no input gradient. Wanted, every
        # layer of f passes its dx on: dx = dy + g_0.
        self._input_grad = bool(value)
        trainable = [j for j, layer in enumerate(self.layers) if layer.params]
        self._start = 0 if value else (trainable[0] if trainable else len(self.layers))
        for j, layer in enumerate(self.layers):
            layer.input_grad = self._input_grad or j > self._start

    def param_shapes(self):
        return {f"{j}.{k}": shape for j, layer in enumerate(self.layers) for k, shape in layer.param_shapes().items()}

    def build(self, device, rng, dtype="float32", init=True) -> None:
        for layer in self.layers:
            layer.build(device, rng, dtype, init=init)
        self.params = ParameterDict(self.layers, "params")
        self.grads = _Gradients(self.layers)
        self.buffers = ParameterDict(self.layers, "buffers")
        self.input_grad = self._input_grad  # which layers have weights is known now

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        try:
            out = model_output_shapes(self.layers, shape)[-1]
        except ValueError as exc:
            raise ValueError(f"Residual: {exc}") from None
        if out is not None and tuple(out) != shape:
            raise ValueError(f"Residual: its layers give output of shape {tuple(out)} for input of shape {shape}; "
                             f"y = x + f(x) needs f to keep the shape")
        return shape

    def fixed_input_shape(self):
        return model_input_shape(self.layers)

    def forward(self, x, training=False):
        h = x
        for layer in self.layers:
            h = layer.forward(h, training)
        if tuple(h.shape) != tuple(x.shape):
            raise ValueError(f"Residual: its layers give output of shape {tuple(h.shape)} for input of shape "
                             f"{tuple(x.shape)}; y = x + f(x) needs f to keep the shape")
        return x + h

    def backward(self, dy):
        g = dy
        for layer in reversed(self.layers[self._start:]):
            g = layer.backward(g)
        return dy + g if self._input_grad else None

    # -- random streams: a Residual has them only where a layer of f draws -----------------------------
    def _drawing(self, method: str) -> dict:
        return {str(j): layer for j, layer in enumerate(self.layers) if callable(getattr(layer, method, None))}

    @property
    def rng_state(self):
        """``() -> {"<j>": layer j's rng_state()}`` for each layer of ``f`` that draws; absent (an
        ``AttributeError``, as for any layer that draws nothing) where none does."""
        if not self._drawing("rng_state"):
            raise AttributeError("rng_state: no layer of this Residual draws random numbers")
        return lambda: {j: layer.rng_state() for j, layer in self._drawing("rng_state").items()}

    @property
    def set_rng_state(self):
        """``(state)``: put back a :attr:`rng_state`; a ``ValueError`` where it names other layers than those
        that draw."""
        drawing = self._drawing("set_rng_state")
        if not drawing:
            raise AttributeError("set_rng_state: no layer of this Residual draws random numbers")

        def set_rng_state(state):
            if not isinstance(state, dict) or set(state) != set(drawing):
                raise ValueError(f"Residual.set_rng_state: expected a dict with the random states of its layers "
                                 f"{sorted(drawing)} (from rng_state()), got {state!r}")
            for j, layer_state in state.items():
                drawing[j].set_rng_state(layer_state)
        return set_rng_state

    # -- saving -------------------------------------------------------------------------------------
    def get_config(self):
        return {"layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        """The Residual of the layers ``config["layers"]`` describes (``{"class", "config"}`` each, as
        :meth:`get_config` gives), rebuilt through the layer registry."""
        specs = config.get("layers") if isinstance(config, dict) else None
        if not isinstance(specs, list) or set(config) != {"layers"}:
            raise ValueError(f"Residual: the config is {{'layers': [{{'class': ..., 'config': ...}}, ...]}}, "
                             f"got {config!r}")
        layers = []
        for j, spec in enumerate(specs):
            name = spec.get("class") if isinstance(spec, dict) else None
            klass = LAYERS.get(name) if isinstance(name, str) else None
            if klass is None:
                raise ValueError(f"Residual: layer {j} has unknown class {name!r}; known: {', '.join(sorted(LAYERS))} "
                                 f"(register custom layers with xpnet.layers.register_layer)")
            try:
                layers.append(klass.from_config(dict(spec.get("config", {}))))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Residual: layer {j} ({name}) cannot be rebuilt from its config "
                                 f"{spec.get('config')!r}: {exc}") from None
        return cls(layers)

    def __repr__(self):
        return f"Residual([{', '.join(map(repr, self.layers))}])"
