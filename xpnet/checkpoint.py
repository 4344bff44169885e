"""Checkpoints: a model file plus everything a run needs to go on exactly as if it had never stopped.

A checkpoint is one ``.npz`` file in xpnet's model format (:mod:`xpnet.io`), written atomically like
:func:`xpnet.save`. Its header is a model's header (:func:`xpnet.saving.header`: architecture, dtype, loss,
input range, metadata) with one more entry::

    "checkpoint": {"epoch": 3,                 # epochs completed
                   "step": 375,                # optimizer steps taken
                   "optimizer": {"class": "Adam", "config": {...}, "counters": {"t": 375}},
                   "schedule": {"name": ..., **its config} or null,
                   "history": {"loss": [...], ...},
                   "rng": {"shuffle": <the host generator's bit_generator.state>,
                           "layers": {"<layer index>": <layer.rng_state()>}},
                   "callbacks": {"EarlyStopping[0]": {"wait": 1, "best": 0.31, ...}, ...},
                   "run": {"epochs": 10, "steps_per_epoch": 47, "rows": 6000, "batch_size": 128,
                           "fingerprint": "9c0e..."},
                   "extra": {...}}

and its arrays are the model's ``state_dict()`` (``"0.W"``, ... and layer buffers) plus the optimizer's
state as ``"optimizer/<slot>/<parameter>"`` (``"optimizer/exp_avg/0.W"``) and the callbacks' arrays as
``"callbacks/<key>/<name>"`` (``EarlyStopping``'s best weights: ``"callbacks/EarlyStopping[0]/params/0.W"``).
Since the model part is an ordinary model file, :func:`xpnet.load` reads a checkpoint as a plain model.

The callbacks' states are kept by key (``"EarlyStopping[0]"``: :mod:`xpnet.callbacks.state`); ``run`` is
what the run was asked for and trained on (:func:`xpnet.train.resume.run_entry`). This module is the file
alone: resuming ``fit`` is :class:`xpnet.train.resume.Resume`'s, writing one every epoch
:class:`xpnet.train.backup.Backup`'s. :func:`load_checkpoint` restores into a model that exists (for a
model from the file alone, ``xpnet.load(path)`` it first).

    >>> model.fit(X, y, optimizer=Adam(), epochs=10, checkpoint_dir="run")       # killed in epoch 4
    >>> model.fit(X, y, epochs=10, resume_from="run/last.npz")                   # epochs 4 to 10
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from . import io, jsonfloat, losses, optim, saving, schedules
from .callbacks.state import callback_states, states_from
from .io import ModelFormatError
from .saving import CALLBACK_PREFIX
from .arguments import is_count
from .parameters import check_names_and_shapes
from .validation import warn

LAST = "last.npz"
"""The file name ``fit(checkpoint_dir=DIR)`` writes every epoch."""
OPTIMIZER_PREFIX = "optimizer/"
"""Where a checkpoint's optimizer state goes among the arrays; not the model's."""

# The optimizers a checkpoint can name, by class name: xpnet's own (never a lookup by an arbitrary name).
OPTIMIZERS: dict[str, type] = {cls.__name__: cls for cls in optim.OPTIMIZERS.values()}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` gives back besides the restored model: where the run stood."""

    epoch: int  # epochs completed: a resumed fit starts with epoch index ``epoch``
    step: int  # optimizer steps taken
    optimizer: optim.Optimizer  # with its configuration and state
    loss: losses.Loss | None
    schedule: object | None = None  # rebuilt by xpnet.schedules.from_config
    history: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # {key: state, its "arrays" as host arrays} (xpnet.callbacks.state); None: a file from before they were kept
    callbacks: dict | None = None
    run: dict | None = None  # xpnet.train.resume.run_entry's dict; None: a file from before it was kept


def model_arrays(header: dict, arrays: dict) -> dict:
    """The arrays of a file (``io.read``'s) that are the model's: all of a model file's; a checkpoint is a model
    file plus the training state, and adds its optimizer's and callbacks' arrays."""
    if "checkpoint" not in header:
        return arrays
    return {k: v for k, v in arrays.items() if not k.startswith((OPTIMIZER_PREFIX, CALLBACK_PREFIX))}


def save_checkpoint(path, model, optimizer, *, epoch: int, step: int, schedule=None, history=None,
                    extra: dict | None = None, callbacks=(), run: dict | None = None) -> None:
    """Write ``model``, ``optimizer`` and the run's position to ``path`` as one ``.npz``, atomically.

    ``epoch`` is the number of epochs completed and ``step`` the optimizer steps taken; ``history`` a
    ``{name: [values per epoch]}`` dict (``History.history``); ``schedule`` a learning-rate schedule with
    ``get_config()`` (one without is not saved, with a warning); ``extra`` any JSON dict of the caller's;
    ``callbacks`` the callbacks given to ``fit``, whose states (:meth:`~xpnet.callbacks.Callback.state_dict`)
    are kept under their keys (:func:`xpnet.callbacks.state.callback_keys`); ``run`` what the run was
    asked for and trained on (:func:`xpnet.train.resume.run_entry`). The random state saved is the model's
    (:meth:`xpnet.Sequential.get_rng_state`). Raises ``ValueError`` for values that cannot be saved and
    ``OSError`` when the file cannot be written (a previous file is then left as it was).
    """
    for name, value in (("epoch", epoch), ("step", step)):
        if not is_count(value):
            raise ValueError(f"save_checkpoint: {name} must be a non-negative int, got {value!r}")
    if not isinstance(optimizer, optim.Optimizer) or OPTIMIZERS.get(type(optimizer).__name__) is not type(optimizer):
        raise TypeError(f"save_checkpoint: {optimizer!r} is not one of xpnet's optimizers "
                        f"({', '.join(OPTIMIZERS)}), which a checkpoint can rebuild")
    state = optimizer.state_dict()
    arrays = model.state_dict()
    arrays.update({OPTIMIZER_PREFIX + k: v for k, v in state["state"].items()})
    states, callback_arrays = callback_states(model, callbacks)
    arrays.update(callback_arrays)
    entry = {"epoch": epoch, "step": step,
             "optimizer": {"class": state["class"], "config": state["config"], "counters": state["counters"]},
             "schedule": schedules.spec_of(schedule),
             "history": _encode_history(history or {}),
             "rng": model.get_rng_state(),
             "callbacks": states,
             "extra": {} if extra is None else extra}
    if run is not None:
        entry["run"] = run
    if not isinstance(entry["extra"], dict):
        raise TypeError(f"save_checkpoint: extra must be a dict, got {type(extra).__name__}")
    try:
        json.dumps(entry, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_checkpoint: the training state is not JSON-serializable ({exc}); history, "
                         f"extra and the callbacks' states must hold numbers, strings, lists and dicts "
                         f"(a non-finite float as its repr)") from None
    io.write(path, {**saving.header(model, getattr(model, "metadata", None) or {}), "checkpoint": entry}, arrays)



def _encode_history(history: dict) -> dict:
    if not isinstance(history, dict):
        raise TypeError(f"save_checkpoint: history must be a dict of lists (History.history), got "
                        f"{type(history).__name__}")
    return {str(k): [jsonfloat.encode(v) for v in values] for k, values in history.items()}


def _decode_history(path, history) -> dict:
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ModelFormatError(f"{path}: garbled checkpoint (history is not a dict of lists)")
    return {k: [jsonfloat.decode(v) for v in values] for k, values in history.items()}


def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """The header's ``checkpoint`` entry (checked), the whole header and all arrays of a checkpoint file.

    Raises ``FileNotFoundError`` naming ``path``, and :class:`~xpnet.io.ModelFormatError` for a file that
    is not a checkpoint (a plain model file included) or is damaged.
    """
    return Loader(path).read


def _read(path: str) -> tuple[dict, dict, dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint file {path} (fit(checkpoint_dir=DIR) writes DIR/{LAST})")
    header, arrays = io.read(path)  # every file-level check of a model file
    entry = header.get("checkpoint")
    if entry is None:
        raise ModelFormatError(f"{path} is a model file (xpnet.save), not a checkpoint: it holds no optimizer "
                               f"state, epoch or random state to resume from. To train on from its weights, "
                               f"xpnet.load it and call fit without resume_from.")
    if not isinstance(entry, dict):
        raise ModelFormatError(f"{path}: garbled checkpoint (its entry is not a dict)")
    spec, rng, schedule = entry.get("optimizer"), entry.get("rng"), entry.get("schedule")
    counts = [(is_count(entry.get(k)), f"{k} {entry.get(k)!r} is not a non-negative int") for k in ("epoch", "step")]
    optimizer_ok = (isinstance(spec, dict) and isinstance(spec.get("config"), dict)
                    and isinstance(spec.get("counters", {}), dict))
    _garbled(path, counts + [(optimizer_ok, "optimizer is not {'class', 'config', 'counters'}")])
    if spec.get("class") not in OPTIMIZERS:
        raise ModelFormatError(f"{path}: unknown optimizer {spec.get('class')!r} in the checkpoint; known: "
                               f"{', '.join(OPTIMIZERS)}")
    _garbled(path, [
        (isinstance(rng, dict) and isinstance(rng.get("shuffle"), dict) and isinstance(rng.get("layers", {}), dict),
         "rng is not {'shuffle', 'layers'}"),
        (schedule is None or (isinstance(schedule, dict) and isinstance(schedule.get("name"), str)),
         "schedule is not {'name', ...its config}"),
        (isinstance(entry.get("extra", {}), dict), "extra is not a dict"),
        (isinstance(entry.get("run", {}), dict), "run is not a dict")])
    return entry, header, arrays


def _garbled(path: str, checks) -> None:
    """The first of ``checks`` (``(ok, what)`` pairs) that fails, as a garbled-checkpoint error naming ``what``."""
    for ok, what in checks:
        if not ok:
            raise ModelFormatError(f"{path}: garbled checkpoint ({what})")


def load_checkpoint(path, model, optimizer=None) -> Checkpoint:
    """Restore ``model`` from a checkpoint and rebuild (or fill) its optimizer; returns the :class:`Checkpoint`.

    ``model`` must have the checkpoint's architecture and dtype (``xpnet.load(path)`` builds one). It gets
    the weights and buffers, the loss, input range and metadata, and the random state. ``optimizer``:

    - ``None``: the checkpoint's optimizer, rebuilt with its configuration and state;
    - an optimizer of the checkpoint's class: it takes the checkpoint's configuration and state (as
      ``torch.optim``'s ``load_state_dict`` does), with a warning naming the values that differ;
    - one of another class: ``ValueError`` naming both, since its state cannot carry over.

    Everything is checked before anything is changed; a damaged file raises
    :class:`~xpnet.io.ModelFormatError` and leaves the model as it was. The callbacks' states come back
    in ``Checkpoint.callbacks`` (:func:`xpnet.callbacks.state.restore_states`).
    """
    return Loader(path).check(model, optimizer).restore()


class Loader:
    """A checkpoint file read (:func:`read_checkpoint`'s checks, its history and callback states decoded
    once), then :meth:`check`-ed against a model and an optimizer with nothing changed, then
    :meth:`restore`-d into them: :func:`load_checkpoint` at once, a resumed ``fit`` with its own checks
    in between (:class:`xpnet.train.resume.Resume`)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.read = self.entry, self.header, arrays = _read(self.path)
        self.history = _decode_history(self.path, self.entry.get("history", {}))
        self.callbacks = states_from(self.path, self.entry, arrays)
        self.arrays = model_arrays(self.header, arrays)
        self.optimizer_arrays = {k[len(OPTIMIZER_PREFIX):]: v for k, v in arrays.items()
                                 if k.startswith(OPTIMIZER_PREFIX)}

    def check(self, model, optimizer=None) -> "Loader":
        """Check the checkpoint against ``model`` and ``optimizer`` (``None``: the checkpoint's, rebuilt),
        changing neither (:func:`load_checkpoint`'s rules)."""
        path, entry = self.path, self.entry
        saving.check_architecture(path, model, self.header)
        _check_arrays(path, model, self.arrays)
        spec = entry["optimizer"]
        cls = OPTIMIZERS[spec["class"]]
        config = _rebuildable(spec["config"], entry.get("schedule"))
        try:
            saved = cls(**config)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: the optimizer {spec['class']} cannot be rebuilt from "
                                   f"{spec['config']!r}: {exc}") from None
        if optimizer is not None and type(optimizer) is not cls:
            raise ValueError(f"resume from {path}: the checkpoint was trained with {saved!r}, but {optimizer!r} "
                             f"was given; an optimizer's state cannot carry over to another kind. Pass "
                             f"optimizer=None to go on with the checkpoint's, or start a new run from its "
                             f"weights: xpnet.load({path!r}) and fit without resume_from.")
        self.state = {"class": spec["class"], "config": config, "counters": spec.get("counters", {}),
                      "state": self.optimizer_arrays}
        try:  # on a throwaway optimizer, against the host arrays of the parameters
            cls(**config).load_state_dict(self.state, {k: self.arrays[k] for k in model.parameters()})
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: {exc}") from None
        self.model, self.optimizer = model, saved if optimizer is None else optimizer
        self.schedule = schedules.from_spec(path, entry.get("schedule"))
        return self

    def restore(self) -> Checkpoint:
        """Load the checked checkpoint into the model and the optimizer; returns where the run stood."""
        path, entry, model, optimizer = self.path, self.entry, self.model, self.optimizer
        before = model.get_rng_state()
        try:
            model.set_rng_state(entry["rng"])
        except (TypeError, ValueError, KeyError) as exc:
            model.set_rng_state(before)
            raise ModelFormatError(f"{path}: garbled checkpoint (its random state cannot be restored: {exc})") from None
        try:
            saving.restore(path, model, self.header, self.arrays)
        except ModelFormatError:
            model.set_rng_state(before)
            raise
        given = optimizer.get_config()
        optimizer.load_state_dict(self.state, model.parameters())
        changed = {k: (given[k], v) for k, v in optimizer.get_config().items() if given.get(k) != v}
        if changed and entry.get("schedule") is not None:
            changed.pop("lr", None)  # the schedule sets the learning rate from the step, whatever was given
        if changed:
            warn(f"resume from {path}: the checkpoint's {type(optimizer).__name__} configuration wins over the "
                 f"one given: " + ", ".join(f"{k}={new!r} (given {old!r})" for k, (old, new) in changed.items()))
        return Checkpoint(epoch=entry["epoch"], step=entry["step"], optimizer=optimizer, loss=model.loss,
                          schedule=self.schedule, history=self.history, extra=entry.get("extra", {}),
                          callbacks=self.callbacks, run=entry.get("run"))


def _rebuildable(config: dict, schedule) -> dict:
    """The optimizer's saved configuration, with the schedule's base lr for a saved lr that no optimizer takes.

    Under a schedule the lr saved is the schedule's last value, which is 0 for a cosine down to
    ``min_lr=0`` that ended before the run did; fit sets the lr from the schedule before every use anyway.
    """
    lr, base = config.get("lr"), (schedule or {}).get("lr")
    if isinstance(lr, (int, float)) and lr <= 0 and isinstance(base, (int, float)) and base > 0:
        return {**config, "lr": base}
    return config



def _check_arrays(path, model, arrays: dict) -> None:
    """The checkpoint's model arrays against the model's parameters and buffers: the same names and shapes."""
    state = {**model.parameters(), **model.buffers()}
    check_names_and_shapes(
        state, arrays,
        lambda missing, extra: ModelFormatError(f"{path}: the model has arrays {sorted(state)} but the checkpoint "
                                                f"holds {sorted(arrays)}"),
        lambda k, shape, want: ModelFormatError(f"{path}: array {k!r} has shape {shape}, the model's {want}"))
