"""``MultiHeadAttention``: (causal) multi-head self-attention over ``(B, T, dim)`` sequences, all heads at once.

With ``H`` heads of ``hd = dim / H`` values each, ``split`` cutting the ``3 dim`` columns into ``[q | k | v]``
and each of those into ``H`` blocks of ``hd`` (head ``h`` takes columns ``h hd ... (h+1) hd``), and ``merge``
its inverse (the heads side by side again)::

    forward                                        backward (dy given; ^T swaps the last two axes)
    q, k, v = split(x W_qkv + b_qkv)               dW_o = merge(O)^T dy,   db_o = sum dy
    S  = q k^T / sqrt(hd) + M                      dO   = split(dy W_o^T)
    P  = softmax(S)          (over the last axis)  dP'  = dO v^T,          dv = P'^T dO
    P' = dropout(P) = P * D                        dP   = dP' * D
    O  = P' v                                      dS   = P * (dP - sum(dP * P, -1))
    y  = merge(O) W_o + b_o                        dq   = dS k / sqrt(hd), dk = dS^T q / sqrt(hd)
                                                   dW_qkv = x^T [dq | dk | dv],  db_qkv = sum [dq | dk | dv]
                                                   dx   = [dq | dk | dv] W_qkv^T

``M`` is the causal mask: 0 where token ``t`` may look at token ``s`` (``s <= t``), ``-inf`` where it may not.
``D`` is inverted dropout's mask (0 with probability ``p``, else ``1 / (1 - p)``), only while training; the
identity otherwise. Shapes: ``x``, ``y``: ``(B, T, dim)``; ``q``, ``k``, ``v``, ``O``: ``(B, H, T, hd)``;
``S``, ``P``: ``(B, H, T, T)``. Every product is one batched matmul over ``(B, H)``: the number of operations
does not depend on ``B``, ``T`` or ``H``. PyTorch's ``scaled_dot_product_attention(q, k, v, is_causal=True)``
computes the same ``O``.
"""

from __future__ import annotations

import functools
import math

from .. import backend
from .. import init as initializers
from ..arguments import check_count
from ..backend import namespace as array_namespace
from ..inplace import add_
from .base import Layer, register_layer
from .core import saved_by_name
from .regularization import MaskStream, check_rate


@register_layer
class MultiHeadAttention(Layer):
    """Multi-head self-attention (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762), causal by default, as
    GPT's (PyTorch: ``scaled_dot_product_attention`` between two linear maps). The equations and their
    backward are in :mod:`xpnet.layers.attention`.

    ``params``: ``W_qkv`` ``(dim, 3 dim)`` (columns ``[q | k | v]``), ``b_qkv`` ``(3 dim,)``, ``W_o``
    ``(dim, dim)``, ``b_o`` ``(dim,)``. Input and output ``(B, T, dim)``, any ``T``. ``dropout`` zeroes
    attention weights while training (inverted, with Dropout's reproducible random stream). ``init`` draws
    ``W_qkv`` and ``out_init`` (default: ``init``) ``W_o``: a name in :mod:`xpnet.init` or a callable
    ``f(shape, rng, device, dtype)``; the biases start at zero.

        >>> attention = MultiHeadAttention(128, heads=4, dropout=0.1)   # (B, T, 128) -> (B, T, 128)
    """

    def __init__(self, dim: int, heads: int, causal: bool = True, dropout: float = 0.0, init="lecun_normal",
                 out_init=None):
        super().__init__()
        check_count("MultiHeadAttention: dim", dim, 1, "a positive int (the width of a token's vector)")
        check_count("MultiHeadAttention: heads", heads, 1, "a positive int")
        if dim % heads:
            raise ValueError(f"MultiHeadAttention: dim ({dim}) must be a multiple of heads ({heads}), each head "
                             f"taking dim / heads values; e.g. heads={_divisor_near(dim, heads)}")
        if not isinstance(causal, bool):
            raise TypeError(f"MultiHeadAttention: causal must be True or False, got {causal!r}")
        self.dim, self.heads, self.causal = dim, heads, causal
        self.dropout = check_rate("MultiHeadAttention: dropout", dropout)
        self.init = _init_name(init)
        self.out_init = None if out_init is None else _init_name(out_init)
        self._init = initializers.get(init)
        self._out_init = self._init if out_init is None else initializers.get(out_init)
        self._stream = MaskStream("MultiHeadAttention")
        self._cache = None

    def param_shapes(self):
        d = self.dim
        return {"W_qkv": (d, 3 * d), "b_qkv": (3 * d,), "W_o": (d, d), "b_o": (d,)}

    def build(self, device, rng, dtype="float32", init=True) -> None:
        # W_qkv, then W_o, from rng; the stream's key is spawned (rng's own numbers untouched), as Dropout's
        zeros, d = initializers.zeros, self.dim
        self.params["W_qkv"] = (self._init if init else zeros)((d, 3 * d), rng, device, dtype)
        self.params["b_qkv"] = zeros((3 * d,), rng, device, dtype)
        self.params["W_o"] = (self._out_init if init else zeros)((d, d), rng, device, dtype)
        self.params["b_o"] = zeros((d,), rng, device, dtype)
        self._stream.build(rng)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3 or shape[2] != self.dim or shape[1] == 0:
            raise ValueError(f"MultiHeadAttention(dim={self.dim}) expects input of shape (batch, T, {self.dim}) "
                             f"with T >= 1, got {shape}")
        return shape

    def forward(self, x, training=False):
        self.compute_output_shape(x.shape)
        if not self.params:
            raise RuntimeError("MultiHeadAttention: the layer has no weights yet; build it first "
                               "(layer.build(device, rng)) or put it in a Sequential, which does")
        xp, p = array_namespace(x), self.params
        (B, T, d), H = x.shape, self.heads
        x2 = xp.reshape(x, (B * T, d))
        # the biases added into the fresh products where the array allows it (inplace.add_): no second array
        qkv = xp.permute_dims(xp.reshape(add_(x2 @ p["W_qkv"], p["b_qkv"]), (B, T, 3, H, d // H)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0, ...], qkv[1, ...], qkv[2, ...]  # (B, H, T, hd) each
        softmax = backend.routine(xp, "attention_softmax") or attention_softmax
        P = softmax(q @ k.mT, 1.0 / math.sqrt(d // H), self.causal)
        D = self._stream.mask(P, P.shape, self.dropout) if training and self.dropout > 0.0 else None
        O = (P if D is None else P * D) @ v
        merged = xp.reshape(xp.permute_dims(O, (0, 2, 1, 3)), (B * T, d))
        self._cache = (x2, qkv, P, D, merged)
        return xp.reshape(add_(merged @ p["W_o"], p["b_o"]), (B, T, d))

    def backward(self, dy):
        xp, p = array_namespace(dy), self.params
        x2, qkv, P, D, merged = self._cache
        q, k, v = qkv[0, ...], qkv[1, ...], qkv[2, ...]
        (B, T, d), H = dy.shape, self.heads
        self.grads.clear()
        dy2 = xp.reshape(dy, (B * T, d))
        self.grads["W_o"] = merged.T @ dy2
        self.grads["b_o"] = xp.sum(dy2, axis=0)
        dO = xp.permute_dims(xp.reshape(dy2 @ p["W_o"].T, (B, T, H, d // H)), (0, 2, 1, 3))
        dv = (P if D is None else P * D).mT @ dO
        dP = dO @ v.mT if D is None else (dO @ v.mT) * D
        dS = (backend.routine(xp, "attention_softmax_backward") or attention_softmax_backward)(dP, P)
        scale = 1.0 / math.sqrt(d // H)
        dq, dk = (dS @ k) * scale, (dS.mT @ q) * scale
        # (3, B, H, T, hd) back to the columns [q | k | v] of each row: split's inverse
        dqkv = xp.reshape(xp.permute_dims(xp.stack([dq, dk, dv]), (1, 3, 0, 2, 4)), (B * T, 3 * d))
        self.grads["W_qkv"] = x2.T @ dqkv
        self.grads["b_qkv"] = xp.sum(dqkv, axis=0)
        return xp.reshape(dqkv @ p["W_qkv"].T, (B, T, d)) if self.input_grad else None

    def rng_state(self) -> dict:
        """``{"key": int, "counter": int}``: the dropout masks' random stream (as Dropout's), for checkpoints."""
        return self._stream.state()

    def set_rng_state(self, state: dict) -> None:
        """Continue the stream ``state`` (from :meth:`rng_state`)."""
        self._stream.set_state(state)

    def get_config(self):
        return {"dim": self.dim, "heads": self.heads, "causal": self.causal, "dropout": self.dropout,
                "init": self.init, "out_init": self.out_init}

    @classmethod
    def from_config(cls, config):
        """Like ``MultiHeadAttention(**config)``, keeping an initializer saved by name only (as Dense does)."""
        config = dict(config)
        for key in ("init", "out_init"):
            name = config.get(key)
            if isinstance(name, str) and not initializers.is_known(name):
                config[key] = saved_by_name(name, "MultiHeadAttention")
        return cls(**config)


def attention_softmax(S, scale: float, causal: bool):
    """``P = softmax(S scale + M)`` over the last axis of the scores ``S`` ``(..., T, T)``, ``M`` the causal mask
    (``causal``) or nothing. The backend's ``attention_softmax`` routine computes the same, and may write
    into ``S`` (the caller's fresh product, used nowhere else)."""
    xp = array_namespace(S)
    S = S * scale
    if causal:
        # -inf, not a large finite negative: exp gives exactly 0, in any dtype, as torch does. No NaN can
        # come of it: the diagonal is never masked, so each row's max is finite and S - max is never
        # -inf - (-inf).
        S = xp.where(causal_mask(S.shape[-1], backend.device_of(S)), S, -math.inf)
    E = xp.exp(S - xp.max(S, axis=-1, keepdims=True))  # the row max subtracted: exp never overflows
    return E / xp.sum(E, axis=-1, keepdims=True)


def attention_softmax_backward(dP, P):
    """``dS = P * (dP - sum(dP * P))`` (sums over the last axis): the softmax's backward, from its output
    ``P``. The backend's routine may write into ``dP`` (the caller's fresh product)."""
    return P * (dP - array_namespace(dP).sum(dP * P, axis=-1, keepdims=True))


@functools.lru_cache(maxsize=256)
def causal_mask(T: int, device) -> object:
    """``(T, T)`` booleans on ``device`` (an :class:`xpnet.Device`): True where row ``t`` may see column ``s``
    (``s <= t``). Made once per length and device: a step at a length seen before makes none."""
    xp = device.xp
    i = xp.arange(T, device=device.native)
    return xp.reshape(i, (T, 1)) >= xp.reshape(i, (1, T))


def _init_name(init):
    return init if isinstance(init, str) else getattr(init, "__name__", "custom")


def _divisor_near(dim: int, heads: int) -> int:
    return min((h for h in range(1, dim + 1) if dim % h == 0), key=lambda h: (abs(h - heads), h))
