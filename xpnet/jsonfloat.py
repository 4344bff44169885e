"""Floats in the strict JSON of xpnet's file headers, which has no inf or nan: a non-finite float goes in as
its ``repr`` (a string) and comes back from it (a checkpoint's history, a callback's best value)."""

from __future__ import annotations

import math

NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode(value):
    """``value`` for strict JSON: a NumPy scalar as a Python one, a non-finite float as its ``repr``."""
    if hasattr(value, "item") and type(value) not in (int, float, str):
        value = value.item()  # a NumPy scalar (np.float64 is a float too, but its repr is 'np.float64(inf)')
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def decode(value):
    """What :func:`encode` took: ``"inf"``, ``"-inf"`` and ``"nan"`` as floats, any other value as it is."""
    return NON_FINITE.get(value, value) if isinstance(value, str) else value
