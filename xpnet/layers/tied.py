"""``TiedDense``: a language model's output head that reuses the token embedding's matrix (weight tying, Press &
Wolf 2017, https://arxiv.org/abs/1608.05859; GPT-2's and nanoGPT's ``lm_head``)::

    forward:   y = x E^T                     (x: (..., dim), E: the Embedding's W, (vocab, dim); y: (..., vocab))
    backward:  dE += dy^T x  (summed over every leading axis),   dx = dy E

One array, two uses: the head owns no parameter, reads ``E`` from its Embedding at every forward (so an
optimizer's new array, a load or ``model.to`` are seen at once), and hands its share of ``dE`` to the
Embedding, whose ``backward`` (later in the same backward pass) adds it to the scatter-add of its own. So the
model's ``parameters()``, its state dict and file, the optimizer's state, gradient clipping and the data-parallel
all-reduce all hold ``E`` once, under the Embedding's name.
"""

from __future__ import annotations

from ..arguments import is_count
from ..backend import namespace as array_namespace
from .base import Layer, register_layer
from .sequence import Embedding


@register_layer
class TiedDense(Layer):
    """``y = x @ E^T`` with ``E`` the ``W`` of an :class:`Embedding` of the same model: the output head of a
    GPT with tied input and output embeddings, ``(..., dim) -> (..., num_embeddings)``, no bias.

    ``embedding`` is the Embedding layer itself, or (in a saved config) its index in the model; the
    :class:`~xpnet.Sequential` it is put in ties it to that layer (:meth:`tie`), which must come before it.
    The head has no parameter: ``E`` is the Embedding's ``params["W"]``, trained and saved once.

        >>> wte = Embedding(65, 128)
        >>> model = Sequential([wte, ..., LayerNorm(128), TiedDense(wte)])
    """

    def __init__(self, embedding):
        super().__init__()
        if isinstance(embedding, Embedding):
            self.embedding, self.index = embedding, None
        elif is_count(embedding, 0):
            self.embedding, self.index = None, embedding
        else:
            raise TypeError(f"TiedDense: embedding is the Embedding layer whose W the head uses (or, in a saved "
                            f"config, that layer's index in the model), got {embedding!r}")

    def tie(self, layers) -> None:
        """Find the Embedding among a model's ``layers`` (by identity, or at :attr:`index`), before this layer."""
        me = next((i for i, layer in enumerate(layers) if layer is self), len(layers))
        if self.embedding is not None:
            found = next((i for i, layer in enumerate(layers) if layer is self.embedding), None)
            if found is None or found > me:
                raise ValueError(f"TiedDense: its Embedding ({self.embedding!r}) must be a layer of the same "
                                 f"Sequential, before the head; put that very layer object in the model's list")
            self.index = found
            return
        target = layers[self.index] if self.index < me else None
        if not isinstance(target, Embedding):
            raise ValueError(f"TiedDense(embedding={self.index}): layer {self.index} of the model must be an "
                             f"Embedding before the head, got {target!r}")
        self.embedding = target

    def _bound(self) -> Embedding:
        if self.embedding is None:
            raise RuntimeError(f"TiedDense(embedding={self.index}) is not tied to its Embedding yet: put it in a "
                               f"Sequential with that layer, which ties them")
        return self.embedding

    def compute_output_shape(self, input_shape):
        shape, emb = tuple(input_shape), self._bound()
        if len(shape) < 2 or shape[-1] != emb.dim:
            raise ValueError(f"{self!r} expects input of shape (batch, ..., {emb.dim}) (its Embedding's dim), got "
                             f"{shape}")
        return (*shape[:-1], emb.num_embeddings)

    def forward(self, x, training=False):
        emb = self._bound()
        self.compute_output_shape(x.shape)
        xp = array_namespace(x)
        self._shape = x.shape
        self._x = xp.reshape(x, (-1, emb.dim))  # (rows, dim): one product each way, as Dense
        y = self._x @ emb.params["W"].T
        return xp.reshape(y, (*x.shape[:-1], emb.num_embeddings))

    def backward(self, dy):
        emb = self._bound()
        xp = array_namespace(dy)
        dy2 = xp.reshape(dy, (-1, emb.num_embeddings))
        emb.add_to_gradient(dy2.T @ self._x)
        if not self.input_grad:
            return None
        return xp.reshape(dy2 @ emb.params["W"], self._shape)

    def get_config(self):
        return {"embedding": self.index}

    def __repr__(self):
        return f"TiedDense(embedding={self.index if self.index is not None else self.embedding!r})"
