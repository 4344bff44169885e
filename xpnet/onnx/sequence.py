"""The exporters of the sequence layers (a transformer's, besides attention)::

    Embedding            Gather(W, ids, axis=0)              (the model's input is then int64 ids)
    PositionalEmbedding  Add(x, Slice(W, 0, T))              (T read from x's shape: any T up to max_len)
    LayerNorm            LayerNormalization(x, gamma, beta, axis=-1, epsilon) from opset 17; before it the
                         same from ReduceMean, Sub, Mul, Add, Sqrt, Div (biased variance, eps inside the root)
    GELU                 Gelu(approximate="tanh") from opset 20; before it 0.5 x (1 + tanh(sqrt(2/pi) (x +
                         0.044715 x^3))) from Mul, Add, Tanh
    TiedDense            MatMul(x, Transpose(W)) on the Embedding's own initializer "<its index>.W": the file
                         holds the tied matrix once, as the model does

(Dense on more than 2 axes is MatMul + Add, in :mod:`.layers`.)
"""

from __future__ import annotations

import math

from .graph import exporter

LAYER_NORMALIZATION_OPSET = 17  # the first with LayerNormalization
GELU_OPSET = 20  # the first with Gelu


@exporter("Embedding")
def _embedding(layer, x, g):
    return g.node("Gather", [g.weight("W", layer.params["W"]), x], axis=0)


@exporter("PositionalEmbedding")
def _positional_embedding(layer, x, g):
    # T as a 1-D tensor [T], taken from x's shape at run time: one file serves every window length
    length = g.node("Slice", [g.node("Shape", [x]), g.ints("t_start", [-2]), g.ints("t_end", [-1]),
                              g.ints("t_axis", [0])])
    rows = g.node("Slice", [g.weight("W", layer.params["W"]), g.ints("zero", [0]), length, g.ints("w_axis", [0])])
    return g.node("Add", [x, rows])


@exporter("LayerNorm")
def _layer_norm(layer, x, g):
    gamma, beta = g.weight("gamma", layer.params["gamma"]), g.weight("beta", layer.params["beta"])
    if g.opset >= LAYER_NORMALIZATION_OPSET:
        return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=layer.eps)
    # opsets 13 to 16 take ReduceMean's axes as an attribute (18 made it an input)
    centred = g.node("Sub", [x, g.node("ReduceMean", [x], axes=[-1], keepdims=1)])
    var = g.node("ReduceMean", [g.node("Mul", [centred, centred])], axes=[-1], keepdims=1)
    std = g.node("Sqrt", [g.node("Add", [var, g.scalar("eps", layer.eps)])])
    return g.node("Add", [g.node("Mul", [g.node("Div", [centred, std]), gamma]), beta])


@exporter("GELU")
def _gelu(layer, x, g):
    if g.opset >= GELU_OPSET:
        return g.node("Gelu", [x], approximate="tanh")
    cube = g.node("Mul", [g.node("Mul", [x, x]), x])
    inner = g.node("Mul", [g.node("Add", [x, g.node("Mul", [cube, g.scalar("cubic", 0.044715)])]),
                           g.scalar("sqrt_2_over_pi", math.sqrt(2.0 / math.pi))])
    half_x = g.node("Mul", [x, g.scalar("half", 0.5)])
    return g.node("Mul", [half_x, g.node("Add", [g.node("Tanh", [inner]), g.scalar("one", 1.0)])])


@exporter("TiedDense")
def _tied_dense(layer, x, g):
    # the Embedding comes before the head (TiedDense.tie checks it), so its exporter has added "<index>.W"
    return g.node("MatMul", [x, g.node("Transpose", [f"{layer.index}.W"], perm=[1, 0])])
