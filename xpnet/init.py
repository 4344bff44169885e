"""Weight initializers.

Every random number is drawn on the host by a seeded NumPy ``Generator`` (from
:func:`xpnet.backend.host_rng`) in float64, cast to the model's dtype on the host, and only then moved
to the device. So one seed gives bit-identical initial weights on NumPy, CuPy, PyTorch and
array-api-strict: the standard has no random API, and each library's own generator differs.
"""

from __future__ import annotations

import math
import re


def fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: ``(in, out)`` for Dense's ``(in, out)`` matrix, and for a
    convolution's ``(out_channels, in_channels, kh, kw)`` (PyTorch's layout) ``in_channels * kh * kw``
    and ``out_channels * kh * kw``, the inputs and outputs one kernel position links (as PyTorch counts)."""
    if len(shape) <= 2:
        return shape[0], shape[-1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def lecun_normal(shape, rng, device, dtype="float32"):
    """N(0, 1/fan_in): the seeds' rule, "random, with std the inverse square root of the links into a node"."""
    return device.asarray(rng.normal(0.0, 1.0 / math.sqrt(fans(shape)[0]), size=shape), dtype)


def he_normal(shape, rng, device, dtype="float32"):
    """N(0, 2/fan_in), for ReLU layers (He et al. 2015, https://arxiv.org/abs/1502.01852)."""
    return device.asarray(rng.normal(0.0, math.sqrt(2.0 / fans(shape)[0]), size=shape), dtype)


def glorot_uniform(shape, rng, device, dtype="float32"):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), Keras' default."""
    limit = math.sqrt(6.0 / sum(fans(shape)))
    return device.asarray(rng.uniform(-limit, limit, size=shape), dtype)


def zeros(shape, rng, device, dtype="float32"):
    """All zeros (biases; a perceptron that starts from nothing)."""
    return device.xp.zeros(shape, dtype=device.dtype(dtype), device=device.native)


def normal(std: float = 0.02):
    """N(0, std^2) whatever the shape: GPT-2's and nanoGPT's rule for every Linear and Embedding weight (std
    0.02), and for the residual output projections ``0.02 / sqrt(2 * n_layer)``.

    The initializer is named ``"normal(std=<std>)"`` (Python's shortest exact repr of the float), the name a
    layer's config keeps and :func:`get` makes it again from, so a saved model loads with the same one.

        >>> Dense(128, 512, init=xpnet.init.normal(0.02))     # or init="normal(std=0.02)"
    """
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not (0.0 < std < math.inf):
        raise ValueError(f"init.normal: std must be a positive finite number, got {std!r}")
    std = float(std)

    def draw(shape, rng, device, dtype="float32"):
        return device.asarray(rng.normal(0.0, std, size=shape), dtype)

    draw.__name__ = draw.__qualname__ = f"normal(std={std!r})"
    return draw


INITIALIZERS = {f.__name__: f for f in (lecun_normal, he_normal, glorot_uniform, zeros)}
_NORMAL = re.compile(r"normal\(std=([^()]+)\)")


def get(init):
    """An initializer from its name (one of :data:`INITIALIZERS`, or ``"normal(std=S)"``: :func:`normal`), or
    the callable itself."""
    if callable(init):
        return init
    found = INITIALIZERS.get(init) if isinstance(init, str) else None
    if found is not None:
        return found
    std = _NORMAL.fullmatch(init) if isinstance(init, str) else None
    if std is not None:
        try:
            return normal(float(std.group(1)))
        except ValueError:
            pass  # not a number, or not a positive one: the message below lists what is taken
    raise ValueError(f"unknown initializer {init!r}: choose one of {', '.join(INITIALIZERS)}, or "
                     f"'normal(std=S)' for N(0, S^2) (GPT-2's 'normal(std=0.02)')")


def is_known(name: str) -> bool:
    """Whether :func:`get` makes an initializer from ``name`` (a saved config's), rather than refusing it."""
    try:
        get(name)
    except ValueError:
        return False
    return True
