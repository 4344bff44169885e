"""``xpnet export MODEL --onnx OUT.onnx [--opset N]``: a saved model as an ONNX file for ONNX Runtime and
the other runtimes that read ONNX (see :func:`xpnet.export_onnx`). Its options are in parser.py, with the
other commands'."""

from __future__ import annotations

import math
import sys

from ..layers import Flatten, Reshape
from ..model import load
from ..onnx import _IMAGE_LAYERS, _sample_shape, export_onnx


def _shape(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"


def _input_shape(model, path):
    """One sample's shape as the model file tells it, or an error that names --input-shape.

    Beyond export_onnx's default (a leading Dense's inputs): a leading Reshape to a fixed shape, such as the
    cnn preset's (1, 28, 28), takes flat rows of that many numbers, which is what xpnet trained it on."""
    try:
        return _sample_shape(model, None)
    except ValueError:  # it starts with a Flatten, a Reshape or an image layer
        first = next(layer for layer in model.layers if isinstance(layer, (Flatten, Reshape, *_IMAGE_LAYERS)))
    if isinstance(first, Reshape) and -1 not in first.shape:
        return (math.prod(first.shape),)
    example = "1,28,28 (channels, height, width)" if isinstance(first, _IMAGE_LAYERS) else \
        "28,28" if isinstance(first, Flatten) else "784"
    raise ValueError(f"{path} starts with {type(first).__name__}, so the shape of one sample is not known: "
                     f"pass it with --input-shape, e.g. --input-shape {example}")


def cmd_export(args) -> int:
    model = load(args.model, device="cpu")  # the weights are read on the host in any case
    shape = args.input_shape or _input_shape(model, args.model)
    try:
        proto = export_onnx(model, args.onnx, opset=args.opset, input_shape=shape)
    except ModuleNotFoundError as exc:  # no onnx: a one-line error saying what to install, not a traceback
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 1
    (inp,), (out,) = proto.graph.input, proto.graph.output
    print(f"wrote {args.onnx}: ONNX opset {args.opset}, {model.dtype}, input '{inp.name}' {_shape(inp)}, "
          f"output '{out.name}' {_shape(out)}")
    return 0
