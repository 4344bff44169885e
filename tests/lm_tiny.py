"""The smallest language model, for the tests of language-model data (test_text_windows.py, mpi_worker.py):
a bigram table, and a small corpus it can learn something from. Not a test file itself.

The layer is registered (so that checkpoints and saved files of it load back), but it lives here, in the
tests: xpnet's own Embedding comes from another change.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import device as device_of

from xpnet.backend import namespace
from xpnet.layers import Layer, register_layer


@register_layer
class Bigram(Layer):
    """``logits[b, t] = W[ids[b, t]]``: each id's row of a ``(V, V)`` table is its next id's logits.

        forward:   z = W[ids]                     (ids: (B, T) int, z: (B, T, V))
        backward:  dW = onehot(ids)^T dz          (the rows of dz summed into the rows their ids picked)
    """

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.seen = None  # a list to record the ids of each training batch into (host copies), or None

    def param_shapes(self):
        return {"W": (self.vocab, self.vocab)}

    def build(self, device, rng, dtype="float32", init=True):
        shape = (self.vocab, self.vocab)
        self.params["W"] = device.asarray(rng.normal(0.0, 0.5, shape) if init else np.zeros(shape), dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.vocab)

    def forward(self, ids, training=False):
        xp = namespace(ids)
        if training and self.seen is not None:
            from xpnet import to_numpy

            self.seen.append(to_numpy(ids).copy())
        self._ids = xp.reshape(ids, (-1,))
        return xp.reshape(xp.take(self.params["W"], self._ids, axis=0), (*ids.shape, self.vocab))

    def backward(self, dz):
        xp = namespace(dz)
        W = self.params["W"]
        classes = xp.arange(self.vocab, dtype=self._ids.dtype, device=device_of(W))
        onehot = xp.astype(self._ids[..., None] == classes, W.dtype)
        self.grads["W"] = onehot.T @ xp.reshape(dz, (-1, self.vocab))
        return None

    def get_config(self):
        return {"vocab": self.vocab}


def corpus(vocab: int = 7, n: int = 600, seed: int = 0) -> np.ndarray:
    """``n`` uint16 ids of a Markov chain over ``vocab`` symbols whose next id is mostly ``id + 1``: a bigram
    model learns it (a loss well below ``log(vocab)``)."""
    rng = np.random.default_rng(seed)
    ids = np.empty(n, dtype=np.uint16)
    ids[0] = 0
    jump = rng.random(n) < 0.2
    other = rng.integers(0, vocab, n)
    for i in range(1, n):
        ids[i] = other[i] if jump[i] else (ids[i - 1] + 1) % vocab
    return ids
