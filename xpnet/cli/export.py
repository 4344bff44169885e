"""``xpnet export MODEL --onnx OUT.onnx [--opset N]``: a saved model as an ONNX file for ONNX Runtime and
the other runtimes that read ONNX (see :func:`xpnet.export_onnx`). Its options are in parser.py, with the
other commands'."""

from __future__ import annotations

import sys

from ..layers import input_layer, model_input_dtype, model_input_shape
from ..model import load
from ..onnx import export_onnx


def _shape(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"


def _input_shape(model, path):
    """One sample's shape as the model's layers tell it (a leading Dense's inputs, the flat rows a leading
    Reshape to a fixed shape takes, as in --model cnn; ``None`` for export_onnx's any width where all its layers
    keep any shape), or an error that names --input-shape."""
    first, shape = input_layer(model.layers), model_input_shape(model.layers)
    if first is None or shape is not None or model_input_dtype(model.layers) is not None:
        return shape  # (token ids: export_onnx names the length axis, so the file takes any length)
    example = first.example_input_shape
    hint = "" if example is None else (", e.g. --input-shape " + ",".join(map(str, example))
                                       + (" (channels, height, width)" if len(example) == 3 else ""))
    raise ValueError(f"{path} starts with {type(first).__name__}, so the shape of one sample is not known: "
                     f"pass it with --input-shape{hint}")


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
