"""The gradients as one flat buffer, so that a step all-reduces once, not once per tensor (pure Array API).

Where the optimizer steps a model's flat buffers at once (:class:`~xpnet.parameters.FlatParameters`, on a
GPU) the all-reduce sums the flat gradient it steps with, and this buffer is not used; it packs the
gradients stepped array by array (on a CPU, on JAX), in place, the same memory at every step.

Each rank's loss is the mean over its ``n_r`` rows, and the single-process loss the mean over all ``N``
rows of the global batch, so the single-process gradient is ``sum_r (n_r / N) grad_r``. The weight goes
in when the gradients are packed, before the sum: a plain mean of the ranks' gradients would be wrong
whenever the shards differ in size (the last batch of an epoch, a batch not divisible by the ranks).
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, device, is_writeable_array


class FlatBuffer:
    """One preallocated 1-D array holding every gradient of ``params`` (a name -> array mapping), end to end.

    :meth:`pack` writes ``weight * grad`` for each parameter into it (in place where the array library
    allows, else as one ``concat``); :meth:`unpack` puts views of a (reduced) buffer back as the
    gradients, so the optimizer steps with them without a copy.
    """

    def __init__(self, params):
        self.names = list(params)
        if not self.names:
            raise ValueError("FlatBuffer: the model has no parameters to train")
        first = params[self.names[0]]
        self.xp = xp = array_namespace(first)
        self.shapes = [tuple(params[k].shape) for k in self.names]
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        self.data = xp.zeros((self.offsets[-1],), dtype=first.dtype, device=device(first))

    def pack(self, grads, weight: float):
        """``weight * grads`` end to end in :attr:`data` (returned); zeros when ``weight`` is 0 (an empty
        shard, whose gradients are last step's or missing)."""
        xp = self.xp
        if not is_writeable_array(self.data):  # JAX: a new buffer each step
            if weight == 0.0:
                return xp.zeros_like(self.data)
            self.data = xp.concat([xp.reshape(grads[k], (-1,)) for k in self.names]) * weight
            return self.data
        if weight == 0.0:
            self.data[...] = 0.0
            return self.data
        for k, lo, hi in zip(self.names, self.offsets, self.offsets[1:]):
            self.data[lo:hi] = xp.reshape(grads[k], (-1,))
        self.data *= weight
        return self.data

    def unpack(self, data, grads) -> None:
        """Set each gradient of ``grads`` to its part of ``data``, reshaped (a view where the library makes one)."""
        xp = self.xp
        for k, shape, lo, hi in zip(self.names, self.shapes, self.offsets, self.offsets[1:]):
            grads[k] = xp.reshape(data[lo:hi], shape)
