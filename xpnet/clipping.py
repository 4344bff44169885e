"""Gradient clipping by the global norm, as ``torch.nn.utils.clip_grad_norm_``: what an optimizer's
``clip_norm=`` does before its step, and a function of its own for a hand-written loop."""

from __future__ import annotations

from .inplace import mul_
from .backend import namespace as array_namespace


def clip_grad_norm(grads, max_norm: float):
    """Scale every gradient by ``min(1, max_norm / (norm + 1e-6))``, ``norm`` their global L2 norm.

    As ``torch.nn.utils.clip_grad_norm_``: one norm over all gradients together, so their directions
    keep their ratios. Returns the norm before clipping as a 0-D array on the device: nothing is read
    back, so clipping costs no synchronization.
    """
    names = list(grads)
    if not names:
        return None
    xp = array_namespace(grads[names[0]])
    total = xp.sqrt(sum(xp.sum(grads[k] * grads[k]) for k in names))
    scale = xp.minimum(max_norm / (total + 1e-6), xp.ones_like(total))
    for k in names:
        grads[k] = mul_(grads[k], scale)
    return total
