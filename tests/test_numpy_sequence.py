"""NumPy's own LayerNorm, GELU and attention-softmax passes (xpnet/backend/_numpy_sequence.py) against the generic
Array API lines they stand in for (xpnet.layers.sequence / activations / attention): the same numbers to
rounding (GELU's and the softmax's elementwise chains to the bit where they keep the generic grouping), the same
shapes and dtypes, at awkward sizes and the GPT's; and only NumPy has them (the other backends run the generic
lines). The layers' values and float64 gradients against PyTorch, on NumPy through these routines, are in
tests/test_sequence_layers.py and tests/test_attention.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.backend import _numpy_sequence as fast
from xpnet.layers import activations, attention, sequence

SHAPES = [(1, 1, 3), (3, 5, 8), (12, 64, 128), (7, 9)]  # a 2-D input too: LayerNorm and GELU take (..., dim)
EPS = {"float32": 2e-6, "float64": 1e-13}  # relative to the largest entry (sums of 768 terms add in another order)


def _normal(shape, seed, scale=1.0, shift=0.0, dtype="float64"):
    return (shift + scale * np.random.default_rng(seed).normal(size=shape)).astype(dtype)


def _same(got, want, dtype, what):
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    tol = EPS[dtype] * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=what)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_layer_norm_equals_the_generic_lines(shape, dtype):
    x = _normal(shape, 0, 2.0, 3.0, dtype)  # an offset mean and a spread: centring and scaling both matter
    gamma, beta = _normal(shape[-1:], 1, dtype=dtype) + 1, _normal(shape[-1:], 2, dtype=dtype)
    want, got = sequence.layer_norm(x, gamma, beta, 1e-5), fast.layer_norm(x, gamma, beta, 1e-5)
    for name, g, w in zip(("y", "xhat", "rstd"), got, want):
        _same(g, w, dtype, name)
    dy = _normal(shape, 3, dtype=dtype)
    want = sequence.layer_norm_backward(dy, want[1], want[2], gamma, True)
    for input_grad in (True, False):
        got = fast.layer_norm_backward(dy, *fast.layer_norm(x, gamma, beta, 1e-5)[1:], gamma, input_grad)
        for name, g, w in zip(("dx", "dgamma", "dbeta"), got, want):
            if name == "dx" and not input_grad:
                assert g is None
            else:
                _same(g, w, dtype, name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES + [(12, 64, 512)], ids=str)
def test_gelu_gives_the_generic_bits(shape, dtype):
    x = _normal(shape, 0, 3.0, dtype=dtype)
    (y, h), (y0, h0) = fast.gelu(x), activations.gelu(x)
    dy = _normal(shape, 1, dtype=dtype)
    for name, got, want in (("y", y, y0), ("h", h, h0), ("dx", fast.gelu_backward(dy, x, h),
                                                         activations.gelu_backward(dy, x, h0))):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 5), (12, 4, 64, 64)], ids=str)
def test_attention_softmax_equals_the_generic_lines(shape, causal, dtype):
    S = _normal(shape, 0, 4.0, dtype=dtype)
    scale = 1.0 / math.sqrt(7)
    want = attention.attention_softmax(S, scale, causal)
    got = fast.attention_softmax(S.copy(), scale, causal)  # (it writes into its argument)
    _same(got, want, dtype, "P")
    if causal:  # the masked entries exactly 0, as the generic lines' exp(-inf)
        assert not np.triu(got, k=1).any()
    dP = _normal(shape, 1, dtype=dtype)
    _same(fast.attention_softmax_backward(dP.copy(), want), attention.attention_softmax_backward(dP, want), dtype,
          "dS")


def test_attention_softmax_stays_finite_for_large_scores():
    """The row maximum is subtracted before exp: scores of 1e4 (exp overflows float32 past 88) give the one-hot
    rows the generic lines give, not inf / inf."""
    S = np.array([[[[1e4, 0.0, 9990.0], [5.0, 1e4, -1e4], [-1e4, 2e4, 1.0]]]], dtype=np.float32)
    for causal in (True, False):
        want = attention.attention_softmax(S, 1.0, causal)
        np.testing.assert_array_equal(fast.attention_softmax(S.copy(), 1.0, causal), want)
        assert np.isfinite(want).all()


def test_only_numpy_has_the_sequence_routines(dev):
    for name in ("layer_norm", "layer_norm_backward", "gelu", "gelu_backward", "attention_softmax",
                 "attention_softmax_backward"):
        assert (xpnet.backend.routine(dev.xp, name) is not None) == (dev.backend == "numpy"), name
