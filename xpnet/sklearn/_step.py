"""scikit-learn's optimizer step on top of xpnet's: its L2 penalty per batch and its Adam epsilon."""

from __future__ import annotations

import math

from .. import backend as _backend
from ..inplace import add_
from ..optim import SGD, Adam, Optimizer


class ScikitLearnStep(Optimizer):
    """``inner``'s step (SGD or Adam) made scikit-learn's: on the gradient of
    ``L + alpha / (2 n_b) sum ||W||^2`` (weights only), and for Adam with scikit-learn's epsilon.

    ``n_b`` is the size of the current batch: ``fit`` takes them in order, ``batch_size`` each and the
    remainder last. ``penalty`` sums ``||W||^2`` over the epoch's steps on the device, read back once
    per epoch for ``loss_curve_``.
    """

    def __init__(self, inner: Optimizer, alpha: float, epsilon: float = 1e-8):
        self.inner, self.alpha, self.epsilon = inner, float(alpha), float(epsilon)
        self.penalty, self.sizes, self.steps = 0.0, [1], 0

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        # scikit-learn's velocity is -lr * (xpnet's and PyTorch's momentum buffer) with the rate of each
        # past step in it; rescaling the buffer when the rate changes keeps the next steps the same.
        if isinstance(self.inner, SGD) and value != self.inner.lr:
            ratio = self.inner.lr / value
            self.inner.state = {k: {slot: v * ratio for slot, v in slots.items()}
                                for k, slots in self.inner.state.items()}
        self.inner.lr = value

    def start_epoch(self, n: int, batch_size: int) -> None:
        self.sizes = [min(batch_size, n - lo) for lo in range(0, n, batch_size)]
        self.steps, self.penalty = 0, 0.0

    def step(self, params, grads):
        if self.alpha:
            scale = self.alpha / self.sizes[self.steps % len(self.sizes)]
            xp = None
            for name in grads:
                if name.endswith(".W"):
                    w = params[name]
                    xp = xp or _backend.device_of(w).xp
                    self.penalty = self.penalty + xp.sum(w * w)
                    grads[name] = add_(grads[name], scale * w)
        self.steps += 1
        if isinstance(self.inner, Adam):
            # scikit-learn adds epsilon to the raw sqrt(v), xpnet's Adam eps * sqrt(1 - beta2^t) (PyTorch's
            # form); this eps makes them the same step. It matters where gradients vanish (a constant input).
            self.inner.eps = self.epsilon / math.sqrt(1.0 - self.inner.beta2 ** (self.inner.t + 1))
        self.inner.step(params, grads)
