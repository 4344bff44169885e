"""The callbacks' states in a checkpoint: each kept under a key naming its class and its place among fit's
callbacks of that class (``"EarlyStopping[0]"``), its arrays as ``"callbacks/<key>/<name>"``; and given back to
the callbacks of a resumed fit."""

from __future__ import annotations

from .. import backend, jsonfloat
from ..io import ModelFormatError
from ..saving import CALLBACK_PREFIX
from ..arguments import is_count
from ..validation import warn
from .base import Callback


def float_to_state(value):
    """A float (or ``None``) for a callback's JSON state (:mod:`xpnet.jsonfloat`: inf and nan as strings)."""
    return None if value is None else jsonfloat.encode(float(value))


def float_from_state(owner: str, name: str, value, optional: bool = False):
    """The float :func:`float_to_state` wrote (``None`` stays ``None`` if ``optional``); a ``ValueError`` if
    the checkpoint holds something else."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{owner}: {name} {value!r} in the checkpoint is not a number")
    try:
        return float(value)  # "inf", "-inf" and "nan" too
    except ValueError:
        raise ValueError(f"{owner}: {name} {value!r} in the checkpoint is not a number") from None


def count_from_state(owner: str, state: dict, name: str) -> int:
    """``state[name]``, an int >= 0; a ``ValueError`` if the checkpoint holds something else."""
    value = state.get(name)
    if not is_count(value):
        raise ValueError(f"{owner}: {name} {value!r} in the checkpoint is not an int >= 0")
    return value


def callback_keys(callbacks) -> dict:
    """``{key: callback}`` for the callbacks of ``callbacks`` that have a state to keep (they override
    :meth:`~xpnet.callbacks.Callback.state_dict`): ``"<class name>[i]"``, ``i`` counting the callbacks of
    that class from 0, in the order given. A resumed ``fit`` given the same callbacks finds the same keys."""
    seen, keyed = {}, {}
    for cb in callbacks:
        name = type(cb).__name__
        i = seen[name] = seen.get(name, -1) + 1
        if isinstance(cb, Callback) and type(cb).state_dict is not Callback.state_dict:
            keyed[f"{name}[{i}]"] = cb
    return keyed


def callback_states(model, callbacks) -> tuple[dict, dict]:
    """The callbacks' JSON states by key, and their arrays as host arrays named ``callbacks/<key>/<name>``."""
    states, arrays = {}, {}
    for key, cb in callback_keys(callbacks).items():
        state = cb.state_dict()
        if state is None:
            continue
        if not isinstance(state, dict):
            raise TypeError(f"save_checkpoint: {key}.state_dict() gave a {type(state).__name__}, not a dict")
        state = dict(state)
        named = state.pop("arrays", None) or {}
        if not isinstance(named, dict):
            raise TypeError(f"save_checkpoint: {key}.state_dict()['arrays'] is a {type(named).__name__}, not a "
                            f"dict {{name: array}}")
        for name, a in named.items():
            a = backend.to_numpy(a)
            if str(a.dtype) != model.dtype:  # a checkpoint holds arrays of the model's dtype only
                raise ValueError(f"save_checkpoint: {key}'s array {name!r} is {a.dtype}, not the model's "
                                 f"{model.dtype}")
            arrays[f"{CALLBACK_PREFIX}{key}/{name}"] = a
        states[key] = state
    return states, arrays


def states_from(path, entry, arrays) -> dict | None:
    """The callbacks' states by key, each with its ``"arrays"`` (host arrays; ``{}`` if none)."""
    states = entry.get("callbacks")
    if states is None:
        return None  # written before callback states were kept
    if not (isinstance(states, dict) and all(isinstance(v, dict) and "arrays" not in v for v in states.values())):
        raise ModelFormatError(f"{path}: garbled checkpoint (callbacks is not {{key: state dict}})")
    found = {key: {**state, "arrays": {}} for key, state in states.items()}
    for name, a in arrays.items():
        if name.startswith(CALLBACK_PREFIX):
            key, _, rest = name[len(CALLBACK_PREFIX):].partition("/")
            if key not in found or not rest:
                raise ModelFormatError(f"{path}: garbled checkpoint (array {name!r} belongs to no callback state)")
            found[key]["arrays"][rest] = a
    return found


def restore_states(saved: dict | None, callbacks, path, active=None, say: bool = True) -> None:
    """Give each of ``callbacks`` (``fit``'s, as given) that has a state the one ``saved`` keeps under its
    key (:func:`callback_keys`; ``saved`` is :func:`states_from`'s, ``None`` for a file from before they
    were kept), through its ``load_state_dict``.

    ``active`` (default: all of them) are those this process runs: a distributed ``fit``'s other ranks run
    no ``rank_zero_only`` callback, but count it in the keys. A state no callback takes, or a callback
    with no state kept, is a warning (``say``: rank 0 alone says it), and that callback starts afresh. A
    state that a callback refuses raises :class:`~xpnet.io.ModelFormatError`.
    """
    given = callback_keys(callbacks)
    if saved is None:
        if given and say:
            warn(f"resume from {path}: the checkpoint holds no callback states (an older xpnet wrote it), so "
                 f"{', '.join(given)} start{'s' if len(given) == 1 else ''} afresh")
        return
    dropped = [k for k in saved if k not in given]
    fresh = [k for k in given if k not in saved]
    if dropped and say:
        warn(f"resume from {path}: the checkpoint holds the state of {', '.join(dropped)}, which no callback given "
             f"to fit takes; it is dropped (give fit the callbacks of the checkpoint's run, in the same order, "
             f"to go on with them)")
    if fresh and say:
        warn(f"resume from {path}: the checkpoint holds no state for {', '.join(fresh)}, so "
             f"{'it starts' if len(fresh) == 1 else 'they start'} afresh")
    active = None if active is None else {id(cb) for cb in active}
    for key, cb in given.items():
        if key in saved and (active is None or id(cb) in active):
            try:
                cb.load_state_dict(saved[key])
            except (TypeError, ValueError, KeyError) as exc:
                raise ModelFormatError(f"{path}: the checkpoint's state of {key} cannot be restored: {exc}") from None
