"""The ONNX graph under construction (:class:`Graph`) and the table of exporters by layer class
(:data:`EXPORTERS`), which :mod:`xpnet.onnx.layers` and the other exporter modules fill."""

from __future__ import annotations

from .. import layers as _layers
from ..backend import to_numpy


EXPORTERS: dict = {}
"""``{layer class: exporter}``. An exporter ``f(layer, x, graph) -> str`` adds the nodes that compute
``layer.forward(x)`` at inference to ``graph`` (a :class:`Graph`) and returns the name of their output.
Only the exact class is looked up: a subclass may compute something else, so it needs its own entry."""


def exporter(*names):
    """Register the decorated function as the exporter of the :mod:`xpnet.layers` classes called ``names``.

    Looked up by name so that an entry for a layer this version of xpnet does not have is skipped, not an
    error. For a layer of your own, set ``EXPORTERS[MyLayer] = f`` directly.
    """
    def register(fn):
        for name in names:
            cls = getattr(_layers, name, None)
            if cls is not None:
                EXPORTERS[cls] = fn
        return fn
    return register


def no_exporter(where: str, layer) -> TypeError:
    """The error for ``layer`` (at index ``where``: ``"2"``, or ``"2.1"`` inside a Residual) without an exporter."""
    known = ", ".join(sorted(cls.__name__ for cls in EXPORTERS))
    return TypeError(f"export_onnx: layer {where}, {layer!r} ({type(layer).__module__}.{type(layer).__qualname__}), "
                     f"has no ONNX exporter. Exportable layers: {known}. For a layer of your own add one: "
                     f"xpnet.onnx.EXPORTERS[{type(layer).__name__}] = f(layer, x, graph) -> output name")


class Graph:
    """The ONNX graph being built: nodes and weights (initializers), every name unique by its prefix.

    ``prefix`` is the layer's index in the model, so the weights keep their state-dict names
    (``"0.W"``, ``"0.b"``) and each node's name starts with its layer's (``"0_Gemm_0"``). ``opset`` is the
    file's operator set (an exporter may use a newer operator where it has one); ``input_rank`` the number of
    axes of the layer's input, batch included, or ``None`` where the layers before it do not tell it.
    """

    def __init__(self, onnx, dtype: str, opset: int):
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.elem_type = {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE}[dtype]
        self.nodes, self.initializers = [], []
        self.prefix = ""
        self.input_rank = None

    def weight(self, name: str, array) -> str:
        """Add ``array`` (any backend, any device) as the initializer ``"<prefix>.<name>"``; returns that name."""
        full = f"{self.prefix}.{name}"
        self.initializers.append(self.onnx.numpy_helper.from_array(to_numpy(array).astype(self.dtype), full))
        return full

    def scalar(self, name: str, value: float) -> str:
        """A 0-d constant of the model's dtype (broadcasts against any input)."""
        full = f"{self.prefix}.{name}"
        self.initializers.append(self.onnx.helper.make_tensor(full, self.elem_type, [], [float(value)]))
        return full

    def ints(self, name: str, values) -> str:
        """A 1-d int64 constant (a shape)."""
        full = f"{self.prefix}.{name}"
        self.initializers.append(self.onnx.helper.make_tensor(full, self.onnx.TensorProto.INT64, [len(values)],
                                                              [int(v) for v in values]))
        return full

    def node(self, op: str, inputs, **attributes) -> str:
        """Add one node ``op(*inputs)`` and return the name of its (single) output."""
        name = f"{self.prefix}_{op}_{len(self.nodes)}"
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [name], name=name, **attributes))
        return name
