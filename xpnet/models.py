"""Ready networks, as functions that return a :class:`~xpnet.Sequential`: :func:`gpt`.

    >>> model = xpnet.models.gpt(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, seed=0)
"""

from __future__ import annotations

import math

from . import init
from .arguments import check_count
from .layers import (GELU, Dense, Dropout, Embedding, LayerNorm, MultiHeadAttention, PositionalEmbedding, Residual,
                     TiedDense)
from .model import Sequential

STD = 0.02
"""GPT-2's and nanoGPT's standard deviation for every Linear and Embedding weight."""


def gpt(vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, dropout: float = 0.0,
        tie: bool = True, **kwargs) -> Sequential:
    """A GPT (Radford et al. 2019; nanoGPT's layout): token ids ``(B, T)`` with ``T <= block_size`` -> logits
    ``(B, T, vocab_size)``, for ``loss="softmax_cross_entropy"`` on next-token targets. ``kwargs`` go to
    :class:`~xpnet.Sequential` (``device``, ``backend``, ``dtype``, ``seed``).

    The layers, in order (``d = n_embd``)::

        Embedding(vocab_size, d), PositionalEmbedding(block_size, d), Dropout(dropout),
        n_layer x [Residual([LayerNorm(d), MultiHeadAttention(d, n_head, dropout=dropout), Dropout(dropout)]),
                   Residual([LayerNorm(d), Dense(d, 4d), GELU(), Dense(4d, d), Dropout(dropout)])],
        LayerNorm(d), TiedDense(the Embedding)            (tie=False: Dense(d, vocab_size, bias=False))

    Initialization as nanoGPT's: every Linear and Embedding weight from N(0, 0.02^2), the residual output
    projections (attention's ``W_o`` and the MLP's second Dense) from N(0, (0.02 / sqrt(2 n_layer))^2), biases
    0, LayerNorm's gamma 1 and beta 0. With ``tie`` (nanoGPT's and GPT-2's) the head computes ``x @ W^T`` with
    the Embedding's ``W``: one array, saved, trained and counted once (:class:`~xpnet.layers.TiedDense`).
    """
    for name, n in (("vocab_size", vocab_size), ("block_size", block_size), ("n_layer", n_layer),
                    ("n_head", n_head), ("n_embd", n_embd)):
        check_count(f"gpt: {name}", n, 1, "a positive int")
    if not isinstance(tie, bool):
        raise TypeError(f"gpt: tie must be True or False, got {tie!r}")
    d, std = n_embd, init.normal(STD)
    residual_std = init.normal(STD / math.sqrt(2 * n_layer))  # GPT-2's scaled init of the residual outputs
    wte = Embedding(vocab_size, d, init=std)
    layers = [wte, PositionalEmbedding(block_size, d, init=std), Dropout(dropout)]
    for _ in range(n_layer):
        layers += [Residual([LayerNorm(d), MultiHeadAttention(d, n_head, dropout=dropout, init=std,
                                                              out_init=residual_std), Dropout(dropout)]),
                   Residual([LayerNorm(d), Dense(d, 4 * d, init=std), GELU(), Dense(4 * d, d, init=residual_std),
                             Dropout(dropout)])]
    layers += [LayerNorm(d), TiedDense(wte) if tie else Dense(d, vocab_size, init=std, bias=False)]
    return Sequential(layers, **kwargs)
