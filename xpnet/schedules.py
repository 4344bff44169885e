"""Learning-rate schedules: plain functions of the step, ``schedule(t) -> lr`` (a host float).

A schedule holds no state that changes as training goes on: the learning rate at step ``t`` depends on
``t`` and the schedule's config only, so a run resumed at step ``t`` gets the very same rates as one
that never stopped, and ``get_config()`` / :func:`from_config` are all a checkpoint needs to keep.

``per`` says what ``t`` counts: ``"epoch"`` (the default: ``t`` is the epoch, from 0, and the rate is set
before each epoch) or ``"step"`` (``t`` is the global optimizer step, ``epoch * steps_per_epoch +
step``, and the rate is set before each step). ``fit(..., schedule=...)`` sets ``optimizer.lr`` from it
as a Python float: nothing goes to the device, nothing is recompiled.

``lr`` (the base rate) may be left out: ``fit`` then takes the optimizer's ``lr`` at the start of the
run. :class:`CosineDecay`'s ``total`` may be left out too: ``fit`` fills in ``epochs`` (per epoch) or
``epochs * steps_per_epoch`` (per step). ``fit`` works on a copy with those filled in (:meth:`bind`);
the schedule you passed is never changed.

    >>> model.fit(X, y, optimizer=AdamW(1e-3), schedule=CosineDecay(warmup=500, per="step"), epochs=20)
"""

from __future__ import annotations

import math

from .arguments import check_count, check_number
from .io import ModelFormatError
from .validation import warn

PER = ("epoch", "step")




class Schedule:
    """Base class: ``schedule(t)`` is the learning rate at ``t`` (epochs or steps, from 0; see ``per``).

    Subclasses implement :meth:`rate` for a resolved base rate; ``get_config()`` lists every argument of
    ``__init__``, so ``type(s)(**s.get_config())`` rebuilds ``s``.
    """

    name = ""

    def __init__(self, lr: float | None = None, per: str = "epoch"):
        owner = type(self).__name__
        self.lr = None if lr is None else check_number(f"{owner}: lr", lr, strict=True)
        if per not in PER:
            raise ValueError(f"{owner}: per must be 'epoch' or 'step', got {per!r}")
        self.per = per

    def __call__(self, t: int) -> float:
        if self.lr is None:
            raise ValueError(f"{type(self).__name__}: no base lr: pass lr=..., or give the schedule to fit, which "
                             f"takes the optimizer's lr")
        check_count(f"{type(self).__name__}: t", t, 0, f"an int >= 0 (the {self.per})")
        return float(self.rate(t))

    def rate(self, t: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"lr": self.lr, "per": self.per}

    def bind(self, lr: float, total: int) -> "Schedule":
        """A copy with the base ``lr`` and (where it needs one) the ``total`` length filled in where unset."""
        config = self.get_config()
        if config["lr"] is None:
            config["lr"] = lr
        if "total" in config and config["total"] is None:
            config["total"] = total
        return type(self)(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class Constant(Schedule):
    """``lr(t) = lr``: the optimizer's rate, unchanged."""

    name = "constant"

    def rate(self, t):
        return self.lr


class StepDecay(Schedule):
    """``lr(t) = lr * gamma ** (t // step_size)``, as ``torch.optim.lr_scheduler.StepLR``."""

    name = "step"

    def __init__(self, lr: float | None = None, step_size: int = 10, gamma: float = 0.1, per: str = "epoch"):
        super().__init__(lr, per)
        self.step_size = check_number("StepDecay: step_size", step_size, low=1, integer=True)
        self.gamma = check_number("StepDecay: gamma", gamma, strict=True)

    def rate(self, t):
        return self.lr * self.gamma ** (t // self.step_size)

    def get_config(self):
        return {"lr": self.lr, "step_size": self.step_size, "gamma": self.gamma, "per": self.per}


class ExponentialDecay(Schedule):
    """``lr(t) = lr * gamma ** t``, as ``torch.optim.lr_scheduler.ExponentialLR``."""

    name = "exponential"

    def __init__(self, lr: float | None = None, gamma: float = 0.95, per: str = "epoch"):
        super().__init__(lr, per)
        self.gamma = check_number("ExponentialDecay: gamma", gamma, strict=True)

    def rate(self, t):
        return self.lr * self.gamma ** t

    def get_config(self):
        return {"lr": self.lr, "gamma": self.gamma, "per": self.per}


class CosineDecay(Schedule):
    """A linear warm-up over ``warmup`` steps, then a half cosine from ``lr`` down to ``min_lr``.

    With ``w = warmup``, ``T = total`` and ``f = start_factor``::

        lr(t) = lr * (f + (1 - f) * t / w)                                     for t < w
        lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * (t - w) / (T - w))) / 2  for w <= t <= T
        lr(t) = min_lr                                                         for t > T

    which is ``SequentialLR([LinearLR(start_factor=f, total_iters=w), CosineAnnealingLR(T_max=T - w,
    eta_min=min_lr)], milestones=[w])`` in torch (and ``CosineAnnealingLR(T_max=T)`` alone when ``w = 0``),
    except that it stays at ``min_lr`` after ``T`` where torch's cosine climbs back up. The warm-up starts
    near 0 (``f = 0.01`` by default; torch's ``LinearLR`` needs ``f > 0``, and a first step at rate 0
    would be wasted). ``total`` is the run's length in ``per`` units; ``fit`` fills it in when it is
    ``None`` (``epochs``, or ``epochs * steps_per_epoch`` per step), so the last step lands just above
    ``min_lr``.
    """

    name = "cosine"

    def __init__(self, lr: float | None = None, total: int | None = None, warmup: int = 0, min_lr: float = 0.0,
                 start_factor: float = 0.01, per: str = "epoch"):
        super().__init__(lr, per)
        self.warmup = check_number("CosineDecay: warmup", warmup, integer=True)
        self.total = None if total is None else check_number("CosineDecay: total", total, low=1, integer=True)
        if self.total is not None and self.total <= self.warmup:
            raise ValueError(f"CosineDecay: total ({total}) must be greater than warmup ({warmup}): the cosine "
                             f"needs at least one {per} after the warm-up")
        self.min_lr = check_number("CosineDecay: min_lr", min_lr)
        self.start_factor = check_number("CosineDecay: start_factor", start_factor, strict=True, high=1.0)
        if self.lr is not None and self.min_lr > self.lr:
            raise ValueError(f"CosineDecay: min_lr ({min_lr}) must not exceed lr ({lr})")

    def rate(self, t):
        if self.total is None:
            raise ValueError("CosineDecay: no total length: pass total=..., or give the schedule to fit, which "
                             "fills it in from epochs (and steps per epoch when per='step')")
        w, f = self.warmup, self.start_factor
        if t < w:
            return self.lr * (f + (1.0 - f) * t / w)
        if t >= self.total:
            return self.min_lr
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * (t - w) / (self.total - w))) / 2.0

    def get_config(self):
        return {"lr": self.lr, "total": self.total, "warmup": self.warmup, "min_lr": self.min_lr,
                "start_factor": self.start_factor, "per": self.per}


SCHEDULES: dict[str, type] = {cls.name: cls for cls in (Constant, StepDecay, ExponentialDecay, CosineDecay)}


def get(spec) -> Schedule:
    """A schedule from its name (``"constant"``, ``"step"``, ``"exponential"``, ``"cosine"``, with default
    arguments), a config dict (:func:`from_config`), or the instance itself."""
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, dict):
        return from_config(spec)
    if isinstance(spec, str) and spec.lower() in SCHEDULES:
        return SCHEDULES[spec.lower()]()
    raise ValueError(f"unknown schedule {spec!r}: choose {', '.join(SCHEDULES)}, or pass a Schedule from "
                     f"xpnet.schedules (for arguments, e.g. CosineDecay(warmup=500, per='step'))")


def to_config(schedule: Schedule) -> dict:
    """``{"name": ..., **schedule.get_config()}``: what a checkpoint stores (plain JSON)."""
    return {"name": schedule.name, **schedule.get_config()}


def from_config(config: dict) -> Schedule:
    """The schedule :func:`to_config` described."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError(f"schedules.from_config: unknown schedule name {name!r} (known: {', '.join(SCHEDULES)}); "
                         f"the dict must come from schedules.to_config")
    return SCHEDULES[name](**config)


def spec_of(schedule):
    """:func:`to_config`'s form of any schedule with ``get_config()``, as a checkpoint keeps it; ``None`` for
    ``None``, or (with a warning) for one without."""
    if schedule is None:
        return None
    if not callable(getattr(schedule, "get_config", None)):
        warn(f"save_checkpoint: the schedule {schedule!r} has no get_config(), so the checkpoint holds none; "
             f"a resumed run gets no schedule back")
        return None
    return {"name": getattr(schedule, "name", None) or type(schedule).__name__, **schedule.get_config()}


def from_spec(path, spec):
    """The schedule a checkpoint at ``path`` keeps (:func:`spec_of`), rebuilt; ``None`` (with a warning) for
    one that is not xpnet's."""
    if spec is None:
        return None
    if spec.get("name") not in SCHEDULES:
        warn(f"load_checkpoint: {path}: the schedule {spec.get('name')!r} is not one of xpnet's, so it cannot be "
             f"rebuilt from the file; pass it again to the resumed fit(schedule=...)")
        return None
    try:
        return from_config(spec)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path}: the schedule {spec['name']!r} cannot be rebuilt: {exc}") from None
