"""Optimizers: ``step(params, grads)`` updates every parameter from its gradient, written once.

``params`` is a mutable mapping ``name -> array`` (``model.parameters()``) and ``grads`` the matching
``model.gradients()``. The standard does not promise that ``p -= u`` mutates ``p`` (array API 2024.12,
gh-895; on an immutable library it only rebinds a local name), so the generic path stores the new
array back under its key. Where the array is writeable (NumPy, CuPy, PyTorch) it is updated in place
instead, which saves an allocation per parameter per step (both through ``_inplace.add_``). Optimizer
state lives on the device.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from ._inplace import add_


class Optimizer:
    def __init__(self, lr: float):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"{type(self).__name__}: lr must be a positive finite number, got {lr!r}")
        self.lr = float(lr)
        self.state: dict = {}

    def step(self, params, grads) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"lr": self.lr}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class SGD(Optimizer):
    """Stochastic gradient descent, the seeds' ``W -= lr * dW``, with optional (Nesterov) momentum.

    With momentum ``mu`` (PyTorch's convention): ``v = mu v + g``, then ``W -= lr v``, or for Nesterov
    ``W -= lr (g + mu v)``.
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def step(self, params, grads):
        lr, mu = self.lr, self.momentum
        for name, g in grads.items():
            p = params[name]
            if mu:
                v = self.state.get(name)
                if v is None:
                    v = g * 1.0  # a copy: g is the layer's buffer, v outlives it
                else:
                    v = add_(v, g, scale=mu)
                self.state[name] = v
                g = g + mu * v if self.nesterov else v
            params[name] = add_(p, (-lr) * g)

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, https://arxiv.org/abs/1412.6980), as PyTorch's ``torch.optim.Adam``.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``W -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {b!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias corrections are host floats: folding them into the step size costs no device work.
        step_size = self.lr * math.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        eps = self.eps * math.sqrt(1.0 - b2 ** self.t)
        for name, g in grads.items():
            xp = array_namespace(g)
            if name not in self.state:
                self.state[name] = (xp.zeros_like(g), xp.zeros_like(g))
            m, v = self.state[name]
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * (g * g)
            self.state[name] = (m, v)
            params[name] = add_(params[name], (-step_size) * m / (xp.sqrt(v) + eps))

    def get_config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get(optimizer, lr: float | None = None):
    """An optimizer from its name (``"sgd"``, ``"momentum"``, ``"adam"``) or the instance itself."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    kwargs = {} if lr is None else {"lr": lr}
    key = str(optimizer).lower()
    if key == "momentum":
        return SGD(momentum=0.9, **kwargs)
    if key in OPTIMIZERS:
        return OPTIMIZERS[key](**kwargs)
    raise ValueError(f"unknown optimizer {optimizer!r}: choose sgd, momentum or adam, or pass an Optimizer")
