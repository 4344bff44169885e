"""Text from a next-token model: ``model.generate(prompt_ids, max_new_tokens)``, nanoGPT's sampling loop.

Each new token: the model's logits at the last position of the context (the ids so far, cut to the last
``block_size``), divided by ``temperature``, all but the ``top_k`` largest set to -inf, softmax, one draw.
The logits come back to the host and the draw is made there, from NumPy's generator seeded by ``seed``: the
same seed gives the same draws on every backend and device (the tokens are the same wherever the backends'
probabilities agree to the draw's precision). Every token runs the whole context through the model again (no
key/value cache: one forward per token, ``O(T^2)`` attention each, as nanoGPT's ``generate``).
"""

from __future__ import annotations

import math

from . import backend
from .arguments import check_count, is_count, is_number
from .layers import PositionalEmbedding, model_input_dtype


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             seed: int | None = None):
    """The prompt followed by ``max_new_tokens`` ids drawn one at a time from the model's next-token distribution
    (nanoGPT's ``generate``), as a host NumPy int64 array: ``(n + max_new_tokens,)`` for a 1-D prompt of ``n``
    ids, ``(B, n + max_new_tokens)`` for ``(B, n)`` prompts (each row drawn on its own).

    ``temperature`` divides the logits (below 1 sharper, above 1 flatter); ``top_k`` keeps the ``k`` likeliest
    ids only; ``seed`` seeds the host generator of the draws (``None``: fresh entropy each call). The context
    is cut to the model's ``block_size`` (its ``PositionalEmbedding``'s ``max_len``). Evaluation mode: no dropout.

        >>> ids = model.generate(vocab.encode("ROMEO:"), 500, top_k=20, seed=0)
        >>> print(vocab.decode(ids))
    """
    ids, one = _prompt(model, prompt_ids)
    check_count("generate: max_new_tokens", max_new_tokens, 0, "an int >= 0")
    if not (is_number(temperature) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"generate: temperature must be a positive number (1.0 samples the model's own "
                         f"distribution), got {temperature!r}")
    if top_k is not None and not is_count(top_k, 1):
        raise ValueError(f"generate: top_k is None or a positive int (keep the k likeliest ids), got {top_k!r}")
    block = next((layer.max_len for layer in model.layers if isinstance(layer, PositionalEmbedding)), None)
    rng, xp = backend.host_rng(seed), backend.namespace(ids)  # the host's NumPy, through its Array API namespace
    with model.device.context():
        for _ in range(max_new_tokens):
            context = ids if block is None else ids[:, -block:]
            logits = model.forward(model.device.asarray(context, "int64"), training=False)
            if logits.ndim != 3:
                raise ValueError(f"generate: the model gives output of shape {tuple(logits.shape)} for ids of shape "
                                 f"{context.shape}; a next-token model gives (batch, T, vocabulary)")
            last = xp.astype(backend.to_numpy(logits[:, -1, :]), xp.float64) / temperature
            ids = xp.concat([ids, _draw(xp, last, top_k, rng)[:, None]], axis=1)
    return ids[0] if one else ids


def _prompt(model, prompt_ids):
    """The prompt as host int64 ``(B, n)`` ids, and whether it was 1-D; refused where the model does not take ids."""
    if model_input_dtype(model.layers) is None:
        raise ValueError("generate: the model does not take token ids (its first layer is not an Embedding); "
                         "generate samples from a next-token model such as xpnet.models.gpt")
    try:
        ids = backend.to_numpy(prompt_ids)  # (a list, or any backend's array)
    except (TypeError, AttributeError, BufferError, ValueError):
        ids = None
    if ids is None or ids.ndim not in (1, 2) or ids.shape[-1] == 0 or ids.dtype.kind not in "iu":
        got = f"{type(prompt_ids).__name__}" if ids is None else f"shape {ids.shape} of {ids.dtype}"
        raise ValueError(f"generate: prompt_ids are integer token ids, (n,) or (batch, n) with n >= 1 (encode the "
                         f"prompt with the model's vocabulary: vocab.encode('ROMEO:')), got {got}")
    model.layers[0].check_input_values(int(ids.min()), int(ids.max()))
    xp = backend.namespace(ids)
    return xp.reshape(xp.astype(ids, xp.int64), (-1, ids.shape[-1])), ids.ndim == 1


def _draw(xp, logits, top_k, rng):
    """One id per row of ``logits`` (host float64, ``(B, V)``): softmax over the ``top_k`` largest, then the
    inverse of the cumulative distribution at one uniform draw per row."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = xp.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = xp.where(logits < kth, -math.inf, logits)
    p = xp.exp(logits - xp.max(logits, axis=-1, keepdims=True))
    cdf = xp.cumulative_sum(p, axis=-1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]
    # the first id whose cumulative probability passes u; ids cut by top_k have p = 0 and are never it
    return xp.minimum(xp.sum(xp.astype(cdf <= u, xp.int64), axis=-1), logits.shape[-1] - 1)
