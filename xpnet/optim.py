"""Optimizers: ``step(params, grads)`` updates every parameter from its gradient, written once.

``params`` is a mutable mapping ``name -> array`` (``model.parameters()``), ``grads`` the matching
``model.gradients()``. The standard does not promise that ``p -= u`` mutates ``p`` (array API 2024.12,
gh-895), so the generic path stores the new array back under its key; where the array is writeable
(NumPy, CuPy, PyTorch) it and the optimizer state are updated in place (``inplace``'s ``add_``, ``mul_``,
``div_``, chained as torch.optim chains them): the same operations in the same order as the docstrings'
expressions, so on NumPy the same bits, with one or two gradient-sized temporaries and no new state.
State lives on the device as ``state[param name][slot]`` with torch.optim's slot names
(``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``square_avg``); :meth:`Optimizer.state_dict` copies it
to the host, :meth:`Optimizer.load_state_dict` (checked by :mod:`xpnet.optimstate`) puts it back. On a GPU a
model's flat parameter buffer is stepped at once, same arithmetic (:mod:`xpnet.flatstate`); on a CPU,
for plain dicts of arrays and on JAX, each array on its own.
"""

from __future__ import annotations

import math

from . import backend, flatstate, optimstate
from .backend import namespace as array_namespace
from .inplace import add_, div_, mul_
from .arguments import check_number
from .clipping import clip_grad_norm

DECAY_ON = ("all", "matrices")  # weight_decay_on's choices


class Optimizer:
    """Base class: ``step(params, grads)``; ``clip_norm`` clips the gradients' global norm first.

    ``state`` maps a parameter's name to its slots (``{"0.W": {"momentum_buffer": array}}``), on the
    parameters' device; ``counters`` names the scalar state (Adam's step count ``t``). ``weight_decay_on``
    says which parameters ``weight_decay`` acts on: ``"all"``, or ``"matrices"`` (those with 2 or more
    axes: kernels and embeddings, not biases nor normalization gains; nanoGPT's two parameter groups).
    A subclass writes its update once, :meth:`_update`, for one array or for a flat buffer of them.
    """

    counters: tuple = ()
    decoupled = False  # AdamW: the weights decay directly, not through the gradient
    zero_state = False  # whether the state starts at zeros (Adam's), rather than from the first gradient
    weight_decay_on, _flat = "all", None  # (an optimizer pickled before they existed has neither)

    def __init__(self, lr: float, weight_decay: float = 0.0, clip_norm: float | None = None,
                 weight_decay_on: str = "all"):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"{type(self).__name__}: lr must be a positive finite number, got {lr!r}")
        self.lr = float(lr)
        self.weight_decay = check_number(f"{type(self).__name__}: weight_decay", weight_decay)
        if clip_norm is not None and not (isinstance(clip_norm, (int, float)) and 0 < clip_norm < math.inf):
            raise ValueError(f"{type(self).__name__}: clip_norm must be a positive number or None, got {clip_norm!r}")
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        if weight_decay_on not in DECAY_ON:
            raise ValueError(f"{type(self).__name__}: weight_decay_on must be 'all' or 'matrices' (only the "
                             f"parameters with 2 or more axes decay: kernels, not biases or norm gains), got "
                             f"{weight_decay_on!r}")
        self.weight_decay_on = weight_decay_on
        self.state: dict = {}
        self._flat = None  # the state as flat rows (flatstate.FlatState), made by the first flat step

    def step(self, params, grads) -> None:
        """Update every parameter of ``params`` from its gradient in ``grads`` (both ``name -> array``): once
        over the flat buffers where ``params`` has them (``model.parameters()``), else array by array."""
        if type(self)._update is Optimizer._update:
            raise NotImplementedError(f"{type(self).__name__} has no update rule: define _update(p, g, state, "
                                      f"flat=None), or step(params, grads) itself")
        self._begin_step()
        flat = getattr(params, "flat", None)
        # each array: plain dicts, JAX, a CPU (FlatParameters.at_once), gradients for some parameters only
        if flat is None or not flat.at_once or len(grads) != len(params):
            self._step_each(params, grads)
        else:
            flatstate.step(self, flat, params, grads)

    def _begin_step(self) -> None:
        """What a step computes once on the host, before any array (Adam's bias corrections)."""

    def _update(self, p, g, state: dict, flat=None):
        """The new ``p`` from its gradient ``g`` (``p`` itself where it is writeable), updating ``state``
        (the parameter's slots, empty at its first step). ``flat`` (a :class:`~xpnet.flatstate.StateRows`)
        when ``p`` is a flat buffer whose state slots are the rows of ``flat.rows``."""
        raise NotImplementedError

    def _step_each(self, params, grads) -> None:
        if self.clip_norm is not None:
            clip_grad_norm(grads, self.clip_norm)
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay and (self.weight_decay_on == "all" or p.ndim >= 2):
                p, g = self._decay(p, g)
            params[name] = self._update(p, g, self.state.setdefault(name, {}) if self.slots() else {})

    def _decay(self, p, g, mask=None):
        """``p`` and ``g`` with the weight decay applied: AdamW's ``p *= 1 - lr wd`` before its step
        (torch.optim.AdamW), else PyTorch's L2 term ``g + wd p``, summed into the temporary ``wd p`` (the
        gradient itself is the layer's buffer). ``mask`` (:class:`~xpnet.flatstate.DecayMask`): only where
        it is on, the rest multiplied by 1 or given 0, which changes no bit."""
        xp = array_namespace(p)
        if self.decoupled:
            factor = 1.0 - self.lr * self.weight_decay
            return mul_(p, factor if mask is None else xp.where(mask.on, factor, mask.ones)), g
        term = p * self.weight_decay
        return p, add_(term if mask is None else xp.where(mask.on, term, 0.0), g)

    def slots(self) -> tuple:
        """The names of the state arrays a parameter has once it has been stepped (none for plain SGD)."""
        return ()

    def get_config(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                "weight_decay_on": self.weight_decay_on}

    def __getstate__(self):  # a copy's state arrays are copies, no longer views of the flat rows
        return {**self.__dict__, "_flat": None}

    def state_dict(self) -> dict:
        """Everything a resumed run needs, on the host: ``{"class", "config", "counters", "state"}``.

        ``state`` is flat, ``{"<slot>/<param name>": np.ndarray}`` (``"exp_avg/0.W"``), each array a host
        copy; the rest is JSON. :meth:`load_state_dict` takes it back.
        """
        return {"class": type(self).__name__, "config": self.get_config(),
                "counters": {k: getattr(self, k) for k in self.counters},
                "state": {f"{slot}/{name}": backend.to_numpy(a).copy()
                          for name, slots in self.state.items() for slot, a in slots.items()}}

    def load_state_dict(self, state: dict, params) -> None:
        """Take the configuration, counters and state of :meth:`state_dict` (as ``torch.optim``'s does).

        ``params`` is the mapping the optimizer steps (``model.parameters()``): each state array goes to
        the device and dtype of the parameter it belongs to, and must have its shape. Raises
        ``ValueError`` naming what does not fit (another optimizer class, an unknown slot or parameter,
        a shape); nothing is changed then.
        """
        fresh, counters, loaded = optimstate.checked(self, state, params)
        self.__dict__.update({k: getattr(fresh, k) for k in fresh.get_config()})
        self.__dict__.update(counters)
        self.state = loaded

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class SGD(Optimizer):
    """Stochastic gradient descent, the seeds' ``W -= lr * dW``, with optional (Nesterov) momentum.

    With momentum ``mu`` (PyTorch's convention): ``v = mu v + g``, then ``W -= lr v``, or for Nesterov
    ``W -= lr (g + mu v)``.
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 clip_norm: float | None = None, weight_decay_on: str = "all"):
        super().__init__(lr, weight_decay, clip_norm, weight_decay_on)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def slots(self):
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, p, g, state, flat=None):
        lr, mu = self.lr, self.momentum
        if mu:
            v = state.get("momentum_buffer")
            if v is None:
                v = g * 1.0  # a copy: g is the layer's buffer, v outlives it
            else:
                v = add_(v, g, scale=mu)
            state["momentum_buffer"] = v
            # Nesterov's g + mu v is a temporary of its own, so it takes the -lr in place too
            step = mul_(add_(v * mu, g), -lr) if self.nesterov else v * (-lr)
        else:
            step = g * (-lr)
        return add_(p, step)

    def get_config(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                "weight_decay_on": self.weight_decay_on}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, https://arxiv.org/abs/1412.6980), as PyTorch's ``torch.optim.Adam``.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``W -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    counters = ("t",)
    zero_state = True

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, clip_norm: float | None = None, weight_decay_on: str = "all"):
        super().__init__(lr, weight_decay, clip_norm, weight_decay_on)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{type(self).__name__}: {name} must be in [0, 1), got {b!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.t = 0

    def slots(self):
        return ("exp_avg", "exp_avg_sq")  # m and v

    def _begin_step(self):
        self.t += 1
        # Bias corrections are host floats: folding them into the step size costs no device work.
        self._step_size = self.lr * math.sqrt(1.0 - self.beta2 ** self.t) / (1.0 - self.beta1 ** self.t)
        self._eps = self.eps * math.sqrt(1.0 - self.beta2 ** self.t)

    def _update(self, p, g, state, flat=None):
        xp = array_namespace(g)
        b1, b2 = self.beta1, self.beta2
        if flat is not None and flat.rows is not None:
            # m and v are the rows of one (2, n) array: one operation scales both by (b1, b2) and one adds
            # ((1 - b1) g, (1 - b2) g g), the same products and sums as the two lines below (two fewer launches)
            betas, complements = flat.columns((b1, b2), (1.0 - b1, 1.0 - b2))
            add_(flat.rows, mul_(xp.stack([g, g * g]), complements), scale=betas)
            m, v = state["exp_avg"], state["exp_avg_sq"]
        else:
            if not state:
                state.update(exp_avg=xp.zeros_like(g), exp_avg_sq=xp.zeros_like(g))
            # m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) (g g), each product in a temporary of its own
            m = state["exp_avg"] = add_(state["exp_avg"], g * (1.0 - b1), scale=b1)
            v = state["exp_avg_sq"] = add_(state["exp_avg_sq"], mul_(g * g, 1.0 - b2), scale=b2)
        # W += (-step_size m) / (sqrt(v) + eps): two temporaries, the denominator and the quotient
        return add_(p, div_(m * (-self._step_size), add_(xp.sqrt(v), self._eps)))

    def get_config(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                "weight_decay_on": self.weight_decay_on}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``:
    ``W *= 1 - lr * weight_decay``, then the Adam step on the plain gradient."""

    decoupled = True

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01, clip_norm: float | None = None, weight_decay_on: str = "all"):
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm, weight_decay_on)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), as ``torch.optim.RMSprop`` (not centered):
    ``s = alpha s + (1 - alpha) g^2``; ``W -= lr g / (sqrt(s) + eps)``, or with momentum ``mu``:
    ``b = mu b + g / (sqrt(s) + eps)``, ``W -= lr b``."""

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0, clip_norm: float | None = None, weight_decay_on: str = "all"):
        super().__init__(lr, weight_decay, clip_norm, weight_decay_on)
        self.alpha = check_number("RMSprop: alpha", alpha, high=1.0, high_open=True, span="[0, 1)")
        self.eps = check_number("RMSprop: eps", eps)
        self.momentum = check_number("RMSprop: momentum", momentum, high=1.0, high_open=True, span="[0, 1)")

    def slots(self):
        return ("square_avg", "momentum_buffer") if self.momentum else ("square_avg",)

    def _update(self, p, g, state, flat=None):
        a, mu = self.alpha, self.momentum
        xp = array_namespace(g)
        s = state.get("square_avg")
        sq = mul_(g * g, 1.0 - a)  # (1 - alpha) g^2, in the temporary g * g
        s = state["square_avg"] = sq if s is None else add_(s, sq, scale=a)
        del sq  # freed before the next two temporaries: one gradient-sized array less at the peak
        direction = g / add_(xp.sqrt(s), self.eps)
        if mu:
            b = state.get("momentum_buffer")
            b = state["momentum_buffer"] = direction if b is None else add_(b, direction, scale=mu)
            del direction  # (b itself at the first step) freed before the temporary below
            step = b * (-self.lr)
        else:
            step = mul_(direction, -self.lr)
        return add_(p, step)

    def get_config(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "clip_norm": self.clip_norm,
                "weight_decay_on": self.weight_decay_on}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


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
    raise ValueError(f"unknown optimizer {optimizer!r}: choose sgd, momentum, adam, adamw or rmsprop, or pass "
                     f"an Optimizer")
