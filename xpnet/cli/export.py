"""``xpnet export MODEL --onnx OUT.onnx [--opset N]``: a saved model as an ONNX file for ONNX Runtime and
the other runtimes that read ONNX (see :func:`xpnet.export_onnx`). Kept apart from the other commands:
only its subparser and ``cmd_export`` are registered in ``parser.py`` and ``__init__.py``."""

from __future__ import annotations

import argparse
import sys

from ..layers import input_layer, model_input_shape
from ..model import load
from ..onnx import DEFAULT_OPSET, export_onnx


def _shape_arg(text: str) -> tuple:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: one sample's shape as positive ints "
                                         f"separated by commas, e.g. 784 or 28,28")
    return shape


def add_export_parser(sub) -> None:
    """Add the ``export`` subcommand to the ``xpnet`` parser's subparsers ``sub``."""
    p = sub.add_parser(
        "export", help="write a saved model as an ONNX file", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a saved model as an ONNX file, with a dynamic batch size, for ONNX Runtime (C++, C#,\n"
                    "Java, JavaScript, phones) and other ONNX runtimes. The input scaling the model was trained\n"
                    "with is recorded in the file's metadata (the runtime does not apply it). Needs the onnx\n"
                    "package: pip install 'xpnet[onnx]'.")
    p.add_argument("model", metavar="MODEL", help="a model file written by 'xpnet train --save' or xpnet.save")
    p.add_argument("--onnx", required=True, metavar="OUT", help="the ONNX file to write, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX operator set (default {DEFAULT_OPSET}; 13 or later)")
    p.add_argument("--input-shape", type=_shape_arg, metavar="N[,N...]",
                   help="one sample's shape (default: the first Dense layer's inputs, or all of a leading "
                        "Reshape's, as in --model cnn; needed when the model starts with Flatten or Conv2D), "
                        "e.g. 28,28")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _shape(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"


def _input_shape(model, path):
    """One sample's shape as the model's layers tell it (a leading Dense's inputs, the flat rows a leading
    Reshape to a fixed shape takes, as in --model cnn; ``None`` for export_onnx's any width where all its layers
    keep any shape), or an error that names --input-shape."""
    first, shape = input_layer(model.layers), model_input_shape(model.layers)
    if first is None or shape is not None:
        return shape
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
