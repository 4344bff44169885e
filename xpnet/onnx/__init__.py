"""Export a model to ONNX, the file that ONNX Runtime (C++, C#, Java, the browser, phones), TensorRT and
OpenVINO read: ``xpnet.export_onnx(model, "model.onnx")``.

Each layer becomes the ONNX operators that compute its inference forward pass, from :data:`EXPORTERS`,
a table keyed by layer class (as skl2onnx keeps its converters by model class), filled by one module per
family of layers: :mod:`.layers` (the plain layers, with the table of what each becomes), :mod:`.sequence`
(Embedding, PositionalEmbedding, LayerNorm, GELU), :mod:`.attention` (``MultiHeadAttention``, ``Residual``);
:mod:`.graph` holds the :class:`Graph` they write to.

The batch dimension is symbolic (``"batch"``), so one file serves any batch size. The input scaling the
model was trained with (``model.metadata["scale"]``, ``model.input_range``) goes into the file's
``metadata_props``: the runtime sees raw numbers, and whoever feeds it must scale them the same way.

The ``onnx`` package is needed only here, and imported only when a model is exported
(``pip install "xpnet[onnx]"``).
"""

from __future__ import annotations

import json

from .. import io, layers as _layers
from ..arguments import is_count
from .._version import __version__
from . import attention as _attention, layers as _exporters, sequence as _sequence  # noqa: F401  (fill EXPORTERS)
from .graph import EXPORTERS, Graph, exporter, no_exporter

DEFAULT_OPSET = 17  # ONNX Runtime 1.12 (2022) and later run it
MIN_OPSET = 13  # Softmax over the last axis alone (before 13 it flattened the trailing axes first)
INPUT, OUTPUT = "input", "output"
# How the ``xpnet`` command scaled 0..255 pixels (model.metadata["scale"]), as a formula for the reader.
SCALE_FORMULAS = {"tutorial": "x / 255 * 0.99 + 0.01 (0..255 pixels to 0.01..1)",
                  "unit": "x / 255 (0..255 pixels to 0..1)"}


# -- export -----------------------------------------------------------------------------------------
def export_onnx(model, path, *, opset: int = DEFAULT_OPSET, input_shape=None):
    """Write ``model`` as an ONNX file at ``path`` that computes ``model.predict`` and returns the
    ``onnx.ModelProto``.

    The graph has one input ``"input"`` of shape ``(batch, *input_shape)`` and one output ``"output"``,
    in the model's dtype (float32, or float64), with a symbolic batch size. ``input_shape`` is one
    sample's shape; by default the model's layers tell it (``(in_features,)`` of the first ``Dense`` or
    ``BatchNorm1d``, the flat rows a leading ``Reshape`` without -1 takes), and it must be given when a
    ``Flatten``, a ``Reshape`` with -1 or an image layer (``Conv2D``, a pooling, ``BatchNorm2d``:
    ``(channels, height, width)``) comes first, or a ``MultiHeadAttention``: ``("T", dim)``, where a name
    (any identifier) makes that axis symbolic, so the file takes sequences of any length. A model whose first
    layer takes ids (``Embedding``) has an int64 input, by default ``(batch, sequence)``, both symbolic.
    ``opset`` is the ONNX operator set, from 13 up to the
    newest the installed ``onnx`` knows. The file's ``metadata_props`` hold ``scale`` and
    ``input_scaling`` (how raw pixels were scaled for training), ``input_range`` (JSON ``[low, high]``
    of the inputs ``fit`` saw), ``loss``, ``xpnet_version`` and ``xpnet_metadata`` (all of
    ``model.metadata``, JSON).

    Raises ``TypeError`` naming the first layer that has no entry in :data:`EXPORTERS`, ``ValueError``
    for a bad ``opset`` or ``input_shape``, and ``ModuleNotFoundError`` (saying what to install) without
    the ``onnx`` package. The file is checked with ``onnx.checker`` (shapes included) before it is written.

        >>> xpnet.export_onnx(model, "mnist.onnx")
    """
    try:
        import onnx
    except ImportError:
        raise ModuleNotFoundError("export_onnx needs the onnx package: pip install 'xpnet[onnx]' "
                                  "(or pip install onnx)") from None
    newest = onnx.defs.onnx_opset_version()
    if not (is_count(opset, MIN_OPSET) and opset <= newest):
        raise ValueError(f"export_onnx: opset must be an int from {MIN_OPSET} to {newest} (the newest this onnx "
                         f"{onnx.__version__} knows), got {opset!r}; the default is {DEFAULT_OPSET}")
    for i, layer in enumerate(model.layers):
        if type(layer) not in EXPORTERS:
            raise no_exporter(str(i), layer)
    h = onnx.helper
    g = Graph(onnx, model.dtype, opset)
    sample = _sample_shape(model, input_shape)
    x, ranks = INPUT, _input_ranks(model, sample)
    for i, layer in enumerate(model.layers):
        g.prefix, g.input_rank = str(i), ranks[i]
        x = EXPORTERS[type(layer)](layer, x, g)
    if g.nodes:
        g.nodes[-1].output[0] = OUTPUT  # the last node writes the graph's output directly
    else:
        g.nodes.append(h.make_node("Identity", [INPUT], [OUTPUT], name="identity"))
    ids = _layers.model_input_dtype(model.layers) is not None
    graph = h.make_graph(
        g.nodes, "xpnet", [h.make_tensor_value_info(INPUT, onnx.TensorProto.INT64 if ids else g.elem_type,
                                                    ["batch", *sample])],
        [h.make_tensor_value_info(OUTPUT, g.elem_type, None)], initializer=g.initializers)
    # make_model_gen_version picks the oldest IR version that holds this opset, so older runtimes load it
    proto = h.make_model_gen_version(graph, opset_imports=[h.make_opsetid("", opset)], producer_name="xpnet",
                                     producer_version=__version__, doc_string=repr(model))
    h.set_model_props(proto, _metadata(model))
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises its own InferenceError; the message names the node
        raise ValueError(f"export_onnx: the graph does not fit together ({exc}); check input_shape="
                         f"{input_shape!r} against the first layer") from None
    onnx.checker.check_model(proto, full_check=True)
    # through a temporary file, as xpnet's own saves: a failed export leaves an older file whole
    io.write_atomically(path, lambda f: f.write(proto.SerializeToString()))
    return proto


def _sample_shape(model, input_shape):
    if input_shape is not None:
        shape = tuple(input_shape)
        if not shape or not all(is_count(d, 1) or (isinstance(d, str) and d.isidentifier()) for d in shape):
            raise ValueError(f"export_onnx: input_shape is one sample's shape, a tuple of positive ints such "
                             f"as (784,) or (28, 28), or names for axes of any length such as ('T', 64), got "
                             f"{input_shape!r}")
        return shape
    first, shape = _layers.input_layer(model.layers), _layers.model_input_shape(model.layers)
    if _layers.model_input_dtype(model.layers) is not None and shape is None:
        return ("sequence",)  # token ids: any number of them
    if first is None:
        return ("features",)  # elementwise layers only: any width
    if shape is not None:
        return shape
    example = first.example_input_shape
    what = "the size of its images" if example is not None and len(example) == 3 else "the shape of its input"
    raise ValueError(f"export_onnx: the model starts with {type(first).__name__}, so {what} is not known: pass "
                     f"input_shape, one sample's shape" + ("" if example is None else f", e.g. input_shape={example}"))


def _input_ranks(model, sample) -> list:
    """Each layer's number of input axes (batch included), as the layers tell them; ``None`` from where they do
    not (a named axis such as ``"sequence"`` is a size not known)."""
    shape = (None, *(d if isinstance(d, int) else None for d in sample))
    try:
        shapes = _layers.model_output_shapes(model.layers, shape)
    except (ValueError, TypeError):  # a size not known in a product (Flatten): the export says the rest
        return [len(shape)] + [None] * (len(model.layers) - 1)
    return [len(shape)] + [None if s is None else len(s) for s in shapes[:-1]]


def _metadata(model) -> dict:
    meta = getattr(model, "metadata", None) or {}
    scale = meta.get("scale")
    span = getattr(model, "input_range", None)
    loss = getattr(model, "loss", None)
    props = {"xpnet_version": __version__, "xpnet_metadata": json.dumps(meta, sort_keys=True),
             "loss": None if loss is None else type(loss).__name__,
             "scale": None if scale is None else str(scale), "input_scaling": SCALE_FORMULAS.get(scale),
             "input_range": None if span is None else json.dumps([float(span[0]), float(span[1])])}
    return {k: v for k, v in props.items() if v is not None}
