"""The learning-rate schedule a resumed fit goes on with: the checkpoint's, stretched when the run's length
changed (other epochs, or other steps per epoch for a per-step schedule), with one line saying so."""

from __future__ import annotations

from .. import schedules
from ..checkpoint import Checkpoint
from ..arguments import is_count
from ..validation import warn


def resumed_schedule(found: Checkpoint, given, run: dict | None = None, say: bool = True):
    """The learning-rate schedule a resumed ``fit`` goes on with: the checkpoint's, as saved (its base lr
    and length filled in by the first run), unless it holds none; then ``given``.

    A ``given`` schedule whose set values differ from the checkpoint's loses, with a warning naming them
    (as an optimizer's configuration does); values it leaves unset (``lr=None``: "the optimizer's") are
    not compared, since after a resume the optimizer's lr is the schedule's last, not its base.

    When the run's length changed (``run``, :func:`run_entry`, asks for other epochs, or other steps per
    epoch for a per-step schedule), the schedule is stretched to the new length, with one warning saying
    so: its length values (:data:`LENGTH_KEYS`) are the given schedule's where it sets them (the
    schedule built for the longer run, as the command line's is), and a cosine's ``total`` that was the
    run's length becomes the new one. A checkpoint that does not say how long its run was (from an older
    xpnet) keeps its schedule, with a warning where a cosine would end before the run.
    """
    if found.schedule is None:
        return given
    if (given is None and run is None) or (run is not None and found.epoch >= run["epochs"]):
        return found.schedule  # (nothing left to train: nothing to compare or stretch)
    if given is not None and not callable(getattr(given, "get_config", None)):
        given = schedules.get(given)  # a name ("cosine") or a config dict
    want, have = schedules.spec_of(given) or {}, schedules.spec_of(found.schedule)
    lengths = _lengths(found, run)
    stretch = {} if lengths is None else _stretched(have, want, *lengths)
    keys = () if lengths is None else LENGTH_KEYS.get(have["name"], ())
    differ = {k: (v, have.get(k)) for k, v in want.items() if v is not None and have.get(k) != v and k not in keys}
    if differ:
        warn("fit: resuming with the checkpoint's learning-rate schedule, not the one given: "
             + ", ".join(f"{k}={new!r} (given {old!r})" for k, (old, new) in differ.items()))
    if not stretch:
        if say and run is not None and found.run is None:
            _ends_early(found, run)
        return found.schedule
    config = {**found.schedule.get_config(), **stretch}
    try:
        stretched = type(found.schedule)(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"resume: the {have['name']} schedule cannot be stretched to this run's length "
                         f"({exc}); resume with the checkpoint's epochs and batch size") from None
    if say:
        warn(_stretch_message(found, run, have, stretch, stretched, lengths))
    return stretched


LENGTH_KEYS = {"cosine": ("total",), "step": ("step_size",), "exponential": ("gamma",)}
"""The values that set how a schedule spreads over the run (the command line derives them from its length)."""


def _length(per: str, run: dict) -> int:
    return run["epochs"] * run["steps_per_epoch"] if per == "step" else run["epochs"]


def _lengths(found: Checkpoint, run):
    """``(old, new)``: the lengths of the checkpoint's run and of this one in the schedule's units, if they differ."""
    old = found.run or {}
    known = all(is_count(old.get(k)) for k in ("epochs", "steps_per_epoch"))
    if run is None or not known:
        return None
    per = found.schedule.per
    return None if _length(per, old) == _length(per, run) else (_length(per, old), _length(per, run))


def _stretched(have: dict, want: dict, old: int, new: int) -> dict:
    """The length values that change: the given schedule's where set, a cosine's total that was the run's."""
    stretch = {}
    for key in LENGTH_KEYS.get(have["name"], ()):
        if want.get(key) is not None:
            stretch[key] = want[key]
        elif key == "total" and have[key] == old:
            stretch[key] = new
    return {k: v for k, v in stretch.items() if v != have[k]}


def _stretch_message(found, run, have, stretch, stretched, lengths) -> str:
    old, per = found.run, found.schedule.per
    span = (f"{run['epochs']} epochs ({lengths[1]} steps) instead of {old['epochs']} ({lengths[0]} steps)"
            if per == "step" else f"{run['epochs']} epochs instead of {old['epochs']}")
    t = found.epoch * run["steps_per_epoch"] if per == "step" else found.epoch  # as fit counts its steps
    at = f"step {t}" if per == "step" else f"epoch {t + 1}"
    also = "; ".join(f"{k} {v!r}, was {have[k]!r}" for k, v in stretch.items() if k != "total")
    return (f"resume: the {have['name']} schedule now spans {span}{f' ({also})' if also else ''}; the learning "
            f"rate at {at} becomes {stretched(t):.3g} (was {found.schedule(t):.3g})")


def _ends_early(found: Checkpoint, run: dict) -> None:
    saved = found.schedule
    total = getattr(saved, "total", None)
    if saved.name != "cosine" or total is None or _length(saved.per, run) <= total:
        return
    unit = "step" if saved.per == "step" else "epoch"
    warn(f"resume: the checkpoint does not say how long its run was (an older xpnet wrote it), so its cosine "
         f"schedule keeps its {total} {unit}s, but this run has {_length(saved.per, run)}: from {unit} {total} on "
         f"the learning rate stays at min_lr {saved.min_lr:g}. To train on at a useful rate, start a new run from "
         f"its weights (xpnet.load) with a schedule of its own.")

