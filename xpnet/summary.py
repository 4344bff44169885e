"""``Sequential.summary()``: the table a Keras user knows (layer, output shape, parameter count, totals).

The output shapes come from one all-zero sample put through the layers (in inference mode, through
shallow copies: the layers' caches for ``backward`` stay as they were), so they are what ``forward``
gives, for any layer, a user's own too. Where the input shape is not known they are ``?``.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .layers import BatchNorm1d, Dense, Dropout, Identity, LeakyReLU, ReLU, Reshape, Sigmoid, Softmax, Step, Tanh

# Layers that keep the shape of what they get: the input shape may be read from a layer after them.
_SHAPE_KEEPING = (Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh, Dropout)


def summary_lines(model, input_shape=None) -> list[str]:
    """The lines of ``model.summary(input_shape)``."""
    given = input_shape is not None
    sample = _checked(input_shape) if given else _input_shape(model.layers)
    shapes = _output_shapes(model, sample)
    rows = [(str(i), type(layer).__name__, "?" if s is None else str((None, *s)), f"{_count(layer):,d}",
             _arguments(layer)) for i, (layer, s) in enumerate(zip(model.layers, shapes))]
    head = ("#", "Layer (type)", "Output shape", "Param #", "Arguments")
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(4)]

    def line(r):  # the arguments last: however long a layer's are, the other columns stay aligned
        return "  ".join([r[0].rjust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                          r[3].rjust(widths[3]), r[4]]).rstrip()

    rule = "=" * (sum(widths) + 2 * 4 + len(head[4]))
    trained = sum(_size(p) for layer in model.layers for p in layer.params.values())
    kept = sum(_size(b) for layer in model.layers for b in _buffers(layer).values())
    item = np.dtype(model.dtype).itemsize
    if sample is None:
        source = "? (not known from the first layers: pass summary(input_shape=...), one sample's shape)"
    else:
        source = str((None, *sample)) + ("" if given else f" (from {type(_first_sized(model.layers)).__name__})")
    return [f"Sequential on {model.device}, {model.dtype}", f"Input shape: {source}", rule, line(head), rule,
            *map(line, rows), rule,
            f"Total params: {trained + kept:,d} ({_bytes((trained + kept) * item)})",
            f"Trainable params: {trained:,d} ({_bytes(trained * item)})",
            f"Non-trainable params: {kept:,d} ({_bytes(kept * item)})"
            + ("  (buffers: BatchNorm's running statistics)" if kept else "")]


def _checked(input_shape) -> tuple:
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else (input_shape,)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"summary: input_shape is one sample's shape (no batch axis), a tuple of positive ints "
                         f"such as (784,) or (1, 28, 28); got {input_shape!r}")
    return shape


def _first_sized(layers):
    """The first layer that fixes the input's width, if only shape-keeping layers come before it."""
    for layer in layers:
        if isinstance(layer, (Dense, BatchNorm1d)) or isinstance(layer, Reshape) and -1 not in layer.shape:
            return layer
        if not isinstance(layer, _SHAPE_KEEPING):
            return None
    return None


def _input_shape(layers):
    first = _first_sized(layers)
    if isinstance(first, Dense):
        return (first.in_features,)
    if isinstance(first, BatchNorm1d):
        return (first.num_features,)
    return None if first is None else (math.prod(first.shape),)


def _output_shapes(model, sample) -> list:
    if sample is None:
        return [None] * len(model.layers)
    dev, shapes = model.device, []
    with dev.context():
        x = dev.asarray(np.zeros((1, *sample)), model.dtype)
        for i, layer in enumerate(model.layers):
            try:
                x = copy.copy(layer).forward(x, training=False)
            except Exception as exc:  # any layer's own refusal, a user's layer too
                raise ValueError(f"summary: layer {i}, {layer!r}, does not take input of shape "
                                 f"{(None, *x.shape[1:])} ({type(exc).__name__}: {exc}); check the layers, or "
                                 f"input_shape") from None
            shapes.append(tuple(x.shape[1:]))
    return shapes


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
