"""``Sequential.summary()``: the table a Keras user knows (layer, output shape, parameter count, totals).

The shapes are the layers' own (``compute_output_shape``, from the input shape the first layers fix): nothing
runs, and a layer's caches for ``backward`` stay as they were. Where the input shape is not known, or a layer
(one of your own without ``compute_output_shape``) does not tell its output's, they are ``?``.
"""

from __future__ import annotations

import math

from .arguments import is_count
from .layers import input_layer, model_input_dtype, model_input_shape, model_output_shapes


def summary_lines(model, input_shape=None) -> list[str]:
    """The lines of ``model.summary(input_shape)``."""
    given = input_shape is not None
    sample = _checked(input_shape) if given else model_input_shape(model.layers)
    shapes = _output_shapes(model, sample)
    rows = _rows(model.layers, None if sample is None else (None, *sample), shapes)
    head = ("#", "Layer (type)", "Output shape", "Param #", "Arguments")
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(4)]

    def line(r):  # the arguments last: however long a layer's are, the other columns stay aligned
        return "  ".join([r[0].rjust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                          r[3].rjust(widths[3]), r[4]]).rstrip()

    rule = "=" * (sum(widths) + 2 * 4 + len(head[4]))
    trained = sum(_size(p) for layer in model.layers for p in layer.params.values())
    kept = sum(_size(b) for layer in model.layers for b in _buffers(layer).values())
    item = model.device.xp.finfo(model.device.dtype(model.dtype)).bits // 8  # bytes per number
    if sample is None:
        source = "? (not known from the first layers: pass summary(input_shape=...), one sample's shape)"
    else:
        ids = model_input_dtype(model.layers)
        source = (str((None, *sample)) + (f", {ids} ids" if ids else "")
                  + ("" if given else f" (from {type(input_layer(model.layers)).__name__})"))
    return [f"Sequential on {model.device}, {model.dtype}", f"Input shape: {source}", rule, line(head), rule,
            *map(line, rows), rule,
            f"Total params: {trained + kept:,d} ({_bytes((trained + kept) * item)})",
            f"Trainable params: {trained:,d} ({_bytes(trained * item)})",
            f"Non-trainable params: {kept:,d} ({_bytes(kept * item)})"
            + ("  (buffers: BatchNorm's running statistics)" if kept else "")]


def _checked(input_shape) -> tuple:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else (input_shape,)
    if not shape or not all(is_count(d, 1) for d in shape):
        raise ValueError(f"summary: input_shape is one sample's shape (no batch axis), a tuple of positive ints "
                         f"such as (784,) or (1, 28, 28); got {input_shape!r}")
    return shape


def _output_shapes(model, sample) -> list:
    if sample is None:
        return [None] * len(model.layers)
    try:
        return model_output_shapes(model.layers, (None, *sample))
    except ValueError as exc:  # "layer i, ..., does not take input of shape ..."
        raise ValueError(f"summary: {exc}; check the layers, or input_shape") from None


def _rows(layers, shape, shapes, prefix="", depth=0) -> list:
    """One row per layer; a layer of layers (``Residual``) is followed by its own, indented, numbered
    ``"<i>.<j>"``; ``shape`` is what the first of ``layers`` gets, ``shapes`` what each gives."""
    rows = []
    for i, (layer, out) in enumerate(zip(layers, shapes)):
        inner = getattr(layer, "layers", None)
        rows.append((f"{prefix}{i}", "  " * depth + type(layer).__name__, "?" if out is None else str(out),
                     f"{_count(layer):,d}", "" if isinstance(inner, list) else _arguments(layer)))
        if isinstance(inner, list):  # its layers' shapes: the whole already took this one, so they do
            inner_shapes = [None] * len(inner) if shape is None else model_output_shapes(inner, shape)
            rows += _rows(inner, shape, inner_shapes, f"{prefix}{i}.", depth + 1)
        shape = out
    return rows


def _arguments(layer) -> str:
    text, name = repr(layer), type(layer).__name__
    return text[len(name) + 1:-1] if text.startswith(name + "(") and text.endswith(")") else text


def _buffers(layer) -> dict:
    return getattr(layer, "buffers", None) or {}  # a user's layer that skipped Layer.__init__ has none


def _count(layer) -> int:
    return sum(_size(a) for part in (layer.params, _buffers(layer)) for a in part.values())


def _size(a) -> int:
    return math.prod(a.shape)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"
