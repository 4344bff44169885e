"""Plain SGD's step taken inside the backward pass, where fit can: each ``Dense`` layer moves its own ``W``
and ``b`` as soon as their gradients are known, and never stores ``dW`` (PyTorch reaches the same with its
post-accumulate-grad hooks, "optimizer step in backward").

Why: at one sample a step, the update is most of the work. ``SGD.step`` on a stored ``dW`` passes over each
weight matrix four times after the forward read (``dW`` written, ``lr * dW`` read and written, ``W`` read and
written); taken in backward, NumPy's routine does it in one read and write of ``W`` (a BLAS rank-1 update,
``backend/_numpy.py``). The generic lines compute the same operations as ``SGD.step``, so on every other
backend the bits are those of a step after backward.

Where: one process (data parallel sums the gradients first), an :class:`~xpnet.optim.SGD` with no
momentum, weight decay or clipping (each needs the gradient or its norm before any weight moves), and a
model stepped array by array in writeable arrays (NumPy and PyTorch on the CPU; a GPU steps its flat buffer
at once, JAX's arrays are immutable). Only plain ``Dense`` layers at the model's top level take it; the
optimizer steps the rest as before, after backward. Outside fit, ``backward`` fills ``grads`` as always.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import inplace
from ..layers import Dense
from ..optim import SGD


def take_sgd(model, optimizer, params, grads, one_process: bool):
    """The Dense layers that step themselves from now on (their ``sgd`` set), and the gradients the
    optimizer still steps after backward (``grads`` less those layers')."""
    if not (one_process and _plain_sgd(optimizer)) or (params.flat is not None and params.flat.at_once):
        return [], grads
    layers, taken = [], set()
    for i, layer in enumerate(model.layers):
        if i >= model._first and type(layer) is Dense and all(inplace.is_writeable_array(p)  # (add_'s own test)
                                                               for p in layer.params.values()):
            layer.sgd = optimizer
            layers.append(layer)
            taken.update(f"{i}.{k}" for k in layer.params)
    return layers, (_Remaining(grads, taken) if taken else grads)


def release_sgd(layers) -> None:
    """Back to gradients stored by backward and stepped by the optimizer (fit's end, however it ends)."""
    for layer in layers:
        layer.sgd = None


def _plain_sgd(opt) -> bool:
    # exactly SGD's rule (a subclass may change the update), with nothing that needs every gradient first
    return (type(opt) is SGD and not opt.momentum and not opt.weight_decay and opt.clip_norm is None)


class _Remaining(Mapping):
    """``grads`` without the names in ``taken``: what the optimizer steps after backward."""

    def __init__(self, grads, taken):
        self._grads, self._keys = grads, [k for k in grads if k not in taken]

    def __getitem__(self, key):
        return self._grads[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)

    def items(self):
        grads = self._grads
        return [(k, grads[k]) for k in self._keys]
