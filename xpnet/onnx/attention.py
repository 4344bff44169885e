"""The exporters of ``MultiHeadAttention`` and ``Residual``::

    MultiHeadAttention   qkv = Add(MatMul(x, W_qkv), b_qkv) -> Reshape (B, T, 3, H, hd) -> Transpose (3, B, H, T, hd);
                         q, k, v = Gather(qkv, 0 / 1 / 2); S = Mul(MatMul(q, Transpose(k)), 1/sqrt(hd));
                         causal: S = Where(M, S, -inf), M = GreaterOrEqual(Range(T) as a column, Range(T) as a
                         row), T read from the input's shape (so any length runs); P = Softmax(S, -1);
                         y = Add(MatMul(Reshape(Transpose(MatMul(P, v)), (B, T, dim)), W_o), b_o)
    Residual             its layers' nodes (prefixed "<i>.<j>": the initializers keep their state-dict names),
                         then Add(x, f(x))

Dropout on the attention weights is the identity at inference, as the layer's. Opset 13 holds every operator
here (Range 11, GreaterOrEqual 12, Unsqueeze with its axes as an input 13).
"""

from __future__ import annotations

import math

from .graph import EXPORTERS, exporter, no_exporter


@exporter("MultiHeadAttention")
def _attention(layer, x, g):
    d, H = layer.dim, layer.heads
    qkv = g.node("Add", [g.node("MatMul", [x, g.weight("W_qkv", layer.params["W_qkv"])]),
                         g.weight("b_qkv", layer.params["b_qkv"])])
    parts = g.node("Transpose", [g.node("Reshape", [qkv, g.ints("qkv_shape", [0, 0, 3, H, d // H])])],
                   perm=[2, 0, 3, 1, 4])
    q, k, v = (g.node("Gather", [parts, _index(g, f"part_{n}", n)], axis=0) for n in range(3))
    S = g.node("Mul", [g.node("MatMul", [q, g.node("Transpose", [k], perm=[0, 1, 3, 2])]),
                       g.scalar("scale", 1.0 / math.sqrt(d // H))])
    if layer.causal:
        S = g.node("Where", [_causal_mask(x, g), S, g.scalar("masked", -math.inf)])
    O = g.node("MatMul", [g.node("Softmax", [S], axis=-1), v])
    merged = g.node("Reshape", [g.node("Transpose", [O], perm=[0, 2, 1, 3]), g.ints("merged_shape", [0, 0, d])])
    return g.node("Add", [g.node("MatMul", [merged, g.weight("W_o", layer.params["W_o"])]),
                          g.weight("b_o", layer.params["b_o"])])


def _causal_mask(x, g) -> str:
    """``(T, T)`` booleans, True where row ``t`` may see column ``s <= t``, with ``T`` the input's length."""
    T = g.node("Gather", [g.node("Shape", [x]), _index(g, "time_axis", 1)], axis=0)
    t = g.node("Range", [_index(g, "start", 0), T, _index(g, "step", 1)])
    return g.node("GreaterOrEqual", [g.node("Unsqueeze", [t, g.ints("column", [1])]),
                                     g.node("Unsqueeze", [t, g.ints("row", [0])])])


def _index(g, name: str, value: int) -> str:
    """A 0-d int64 constant (what Gather takes to drop the axis, and Range its bounds)."""
    full = f"{g.prefix}.{name}"
    g.initializers.append(g.onnx.helper.make_tensor(full, g.onnx.TensorProto.INT64, [], [int(value)]))
    return full


@exporter("Residual")
def _residual(layer, x, g):
    outer, h = g.prefix, x
    for j, sub in enumerate(layer.layers):
        if type(sub) not in EXPORTERS:
            raise no_exporter(f"{outer}.{j}", sub)
        g.prefix = f"{outer}.{j}"
        h = EXPORTERS[type(sub)](sub, h, g)
    g.prefix = outer
    return g.node("Add", [x, h])
