"""NumPy's own passes for the transformer's layers: LayerNorm, GELU and attention's softmax, forward and backward.

Each computes what the generic function of the same name computes (``xpnet.layers.sequence.layer_norm``,
``xpnet.layers.activations.gelu``, ``xpnet.layers.attention.attention_softmax`` and their backwards; tested
against them in tests/test_numpy_sequence.py) with fewer passes over memory: NumPy runs every operation as a
pass of its own over its operands, into a fresh array, so at the GPT's sizes (arrays of 0.4 to 1.5 MB, in the
CPU's second-level cache or just past it) the number of passes and of fresh arrays is the time. The means here:

- results written into an array this pass made (``a *= b``, ``out=``) instead of a new one each operation;
- sums along the last axis (short rows: 64 to 512 numbers) as ``einsum`` or a BLAS matrix-vector product,
  3 to 4 times faster than NumPy's reduction there (``np.sum(axis=-1)`` runs its loop once per row); a row's
  maximum as ``argmax`` and a gather (``np.max(axis=-1)`` is not vectorized along short rows: 185 against 88 us
  for the attention's (12, 4, 64, 64) scores);
- the causal mask added as 0 / -inf (one pass) rather than chosen with ``where`` (a second array).

The sums add in another order than NumPy's pairwise reductions, so results differ from the generic lines
in the last bits (float32 rounding, 1e-7 relative); the elementwise chains keep the generic grouping and
give the same bits. Measured per call at the baby GPT's sizes (one thread, float32): LayerNorm on (12, 64, 128)
forward 186 -> 116 us, backward 253 -> 159 us; the attention's softmax 640 -> 330 us, its backward 192 -> 100
us; GELU on (12, 64, 512) forward 420 -> 356 us, backward 384 -> 315 us.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # (the values of xpnet.layers.activations, which imports backend)
_GELU_CUBIC = 0.044715 * _SQRT_2_OVER_PI


def _rows(a):
    return a.reshape(-1, a.shape[-1])


@functools.lru_cache(maxsize=64)
def _fill(n: int, value: float, dtype) -> np.ndarray:
    """A constant vector of ``n`` (read-only: shared by every call)."""
    out = np.full((n,), value, dtype=dtype)
    out.flags.writeable = False
    return out


def layer_norm(x, gamma, beta, eps):
    """:func:`xpnet.layers.sequence.layer_norm`: ``(y, xhat, rstd)``."""
    n = x.shape[-1]
    rows = _rows(x)
    xhat = rows - (rows @ _fill(n, 1.0 / n, x.dtype))[:, None]  # the row means by BLAS
    var = np.einsum("ij,ij->i", xhat, xhat)
    var *= 1.0 / n
    var += eps
    rstd = np.sqrt(var, out=var)
    np.divide(1.0, rstd, out=rstd)
    xhat *= rstd[:, None]
    y = xhat * gamma
    y += beta
    lead = x.shape[:-1]
    return y.reshape(x.shape), xhat.reshape(x.shape), rstd.reshape(*lead, 1)


def layer_norm_backward(dy, xhat, rstd, gamma, input_grad=True):
    """:func:`xpnet.layers.sequence.layer_norm_backward`: ``(dx, dgamma, dbeta)``."""
    n = dy.shape[-1]
    d, xh = _rows(dy), _rows(xhat)
    dbeta = _fill(d.shape[0], 1.0, dy.dtype) @ d
    dgamma = np.einsum("ij,ij->j", d, xh)
    if not input_grad:
        return None, dgamma, dbeta
    dxhat = d * gamma
    mean_dxhat = dxhat @ _fill(n, 1.0 / n, dy.dtype)
    mean_dot = np.einsum("ij,ij->i", dxhat, xh)
    mean_dot *= 1.0 / n
    dxhat -= mean_dxhat[:, None]
    dxhat -= xh * mean_dot[:, None]
    dxhat *= _rows(rstd)
    return dxhat.reshape(dy.shape), dgamma, dbeta


def gelu(x):
    """:func:`xpnet.layers.activations.gelu`: ``(y, h)``, the same bits (the same operations, in place)."""
    h = x * x
    h *= _GELU_CUBIC
    h += _SQRT_2_OVER_PI
    h *= x
    np.tanh(h, out=h)
    h *= 0.5
    h += 0.5
    return x * h, h


def gelu_backward(dy, x, h):
    """:func:`xpnet.layers.activations.gelu_backward`, the same bits."""
    dx = 1.0 - h
    dx *= h
    dx *= x  # x (h (1 - h))
    du2 = x * x
    du2 *= 6.0 * _GELU_CUBIC
    du2 += 2.0 * _SQRT_2_OVER_PI
    dx *= du2
    dx += h
    dx *= dy
    return dx


@functools.lru_cache(maxsize=64)
def _causal_addend(T: int, dtype) -> np.ndarray:
    """``(T, T)``: 0 where row ``t`` may see column ``s`` (``s <= t``), ``-inf`` above the diagonal."""
    out = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)
    out.flags.writeable = False
    return out


def attention_softmax(S, scale, causal):
    """:func:`xpnet.layers.attention.attention_softmax`, written into ``S``."""
    S *= scale
    if causal:
        S += _causal_addend(S.shape[-1], S.dtype)  # s + 0 = s exactly; s - inf = -inf
    S -= np.take_along_axis(S, np.argmax(S, axis=-1)[..., None], axis=-1)
    np.exp(S, out=S)
    S /= np.einsum("...i->...", S)[..., None]
    return S


def attention_softmax_backward(dP, P):
    """:func:`xpnet.layers.attention.attention_softmax_backward`, written into ``dP``."""
    dP -= np.einsum("...i,...i->...", dP, P)[..., None]
    dP *= P
    return dP
