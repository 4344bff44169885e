"""Reading an optimizer's :meth:`~xpnet.optim.Optimizer.state_dict` back: every value checked against the
optimizer and the parameters it steps before anything is changed, so a bad checkpoint is refused whole."""

from __future__ import annotations

from . import backend
from .arguments import is_count


def checked(opt, state: dict, params):
    """``(fresh, counters, loaded)`` from ``state`` for the optimizer ``opt`` stepping ``params``: a new
    optimizer built from the saved configuration (its constructor checks every value), the counters,
    and ``{name: {slot: array}}`` on each parameter's device and dtype. Raises ``ValueError`` naming what
    does not fit."""
    owner = f"{type(opt).__name__}.load_state_dict"
    if state.get("class") != type(opt).__name__:
        raise ValueError(f"{owner}: the state is of a {state.get('class')!r} optimizer, not a "
                         f"{type(opt).__name__}")
    try:
        fresh = type(opt)(**state.get("config", {}))  # the constructor checks every value
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}: bad config {state.get('config')!r}: {exc}") from None
    counters = dict(state.get("counters", {}))
    if set(counters) != set(opt.counters) or not all(
            is_count(v) for v in counters.values()):
        raise ValueError(f"{owner}: counters {counters!r}, expected non-negative ints {list(opt.counters)}")
    loaded: dict = {}
    for key, host in state.get("state", {}).items():
        slot, _, name = key.partition("/")
        if slot not in fresh.slots() or name not in params:
            raise ValueError(f"{owner}: state {key!r} is not '<slot>/<parameter>' with a slot of "
                             f"{fresh!r}: {list(fresh.slots())}, and a parameter of the model "
                             f"({', '.join(params)})")
        p = params[name]
        if tuple(host.shape) != tuple(p.shape):
            raise ValueError(f"{owner}: state {key!r} has shape {tuple(host.shape)}, its parameter "
                             f"{tuple(p.shape)}")
        dev = backend.device_of(p)
        if host.dtype.name not in ("float32", "float64") or dev.dtype(host.dtype.name) != p.dtype:
            raise ValueError(f"{owner}: state {key!r} is {host.dtype}, its parameter {p.dtype}")
        # a copy of its own: steps update the state in place, and asarray may share the host memory
        with dev.context():
            loaded.setdefault(name, {})[slot] = dev.xp.asarray(dev.asarray(host, host.dtype.name), copy=True)
    for name, slots in loaded.items():  # half a state (m without v) is no state a step can go on from
        if set(slots) != set(fresh.slots()):
            raise ValueError(f"{owner}: the state of {name} has {sorted(slots)}, but every parameter "
                             f"{fresh!r} has stepped has {sorted(fresh.slots())}")
    return fresh, counters, loaded
