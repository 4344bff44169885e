"""Updates written in place where the array allows it, else as a new array (array API gh-895).

The standard does not promise that ``a += b`` mutates ``a``: on an immutable library (JAX) it only
rebinds a local name. So every update here *returns* the result, and the caller stores it back
(``params[name] = add_(params[name], step)``, ``self.w = add_(self.w, step)``). Where the array is
writeable (NumPy, CuPy, PyTorch) the result is ``a`` itself, updated in its own memory: no allocation
of a second weight-sized array per step. Layers, optimizers, the training loop and the tutorial all
go through these functions.

The optimizers chain them on temporaries they own, as torch.optim chains ``mul_``, ``add_`` and
``addcdiv_``: ``add_(mul_(g * g, 1 - b2), ...)`` scales the fresh ``g * g`` in its own memory instead of
allocating ``(1 - b2) * (g * g)`` beside it. On NumPy that is one temporary where there were several,
and the same floating-point operations in the same order, so the same bits (multiplication and
addition of two operands commute exactly in IEEE arithmetic; only the grouping matters).
"""

from __future__ import annotations

from array_api_compat import array_namespace, is_writeable_array


def add_(a, b, *, scale: float | None = None):
    """``scale * a + b`` (``a + b`` without ``scale``), computed in ``a``'s memory where it is writeable.

    Returns the result: ``a`` itself where it was updated in place, else a new array.
    """
    if is_writeable_array(a):
        if scale is not None:
            a *= scale
        a += b
        return a
    return (a if scale is None else scale * a) + b


def mul_(a, b):
    """``a * b``, computed in ``a``'s memory where it is writeable. Returns the result."""
    if is_writeable_array(a):
        a *= b
        return a
    return a * b


def div_(a, b):
    """``a / b``, computed in ``a``'s memory where it is writeable. Returns the result."""
    if is_writeable_array(a):
        a /= b
        return a
    return a / b


def copy_(into, a):
    """A copy of ``a``, written into ``into``'s memory where that is writeable and of the same shape and
    dtype (``into`` may be ``None``). Returns the copy."""
    if into is not None and is_writeable_array(into) and into.shape == a.shape and into.dtype == a.dtype:
        into[...] = a
        return into
    return array_namespace(a).asarray(a, copy=True)
