"""The one test of a count and of a number, for every scalar argument in xpnet.

A leaf module (it imports nothing from xpnet) so that the layers and the backend, which
:mod:`xpnet.validation` itself imports, can use it too. ``True`` is an ``int`` to Python but never a
count or a number here: ``Dense(True, 3)`` is a mistake, not one input.
"""

from __future__ import annotations

import math


def is_count(value, low: int = 0) -> bool:
    """Whether ``value`` is an int (not a bool) >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def is_number(value) -> bool:
    """Whether ``value`` is an int or a float, not a bool (NaN and inf included: a range test rejects them)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_count(name: str, value, low: int = 1, expected: str | None = None) -> int:
    """``value`` if it is an int >= ``low``, else ``ValueError("{name} must be {expected}, got {value!r}")``;
    ``expected`` defaults to ``"an int >= {low}"``."""
    if not is_count(value, low):
        raise ValueError(f"{name} must be {expected or f'an int >= {low}'}, got {value!r}")
    return value


def check_number(name: str, value, *, low: float = 0.0, high: float | None = None, strict: bool = False,
                 high_open: bool = False, integer: bool = False, span: str | None = None):
    """``value`` as a float (an int with ``integer``) if it is finite and ``>= low`` (``> low`` with
    ``strict``) and ``<= high`` (``< high`` with ``high_open``), else a ``ValueError`` naming ``name`` and
    the range (``span`` where the caller words it itself)."""
    ok = is_count(value, -math.inf) if integer else is_number(value) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        span = span or f"{'>' if strict else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")
        raise ValueError(f"{name} must be {'an integer' if integer else 'a finite number'} {span}, got {value!r}")
    return int(value) if integer else float(value)
