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

Callbacks with a state (:meth:`xpnet.callbacks.Callback.state_dict`: ``EarlyStopping``'s patience count,
best value and best weights, ``ModelCheckpoint``'s best value, where ``CSVLogger``'s file had got to) are
kept under a key naming the class and its place among ``fit``'s callbacks of that class
(``"EarlyStopping[0]"``, the first one). A resumed ``fit`` gives each of its callbacks the state kept
under its key (:func:`restore_callbacks`); a state that no callback takes, or a callback with no state
kept (a checkpoint from before callback states were kept included), is a warning, and that callback
starts afresh.

``run`` is what the run was asked for and trained on (:func:`run_entry`): a resumed ``fit`` says what
changed (:func:`compare_runs`: other rows, another batch size) and stretches a schedule whose length
was the run's when the run's length changed (:func:`resumed_schedule`). Files from before it was kept
resume as they did.

    >>> model.fit(X, y, optimizer=Adam(), epochs=10, checkpoint_dir="run")       # killed in epoch 4
    >>> model.fit(X, y, epochs=10, resume_from="run/last.npz")                   # epochs 4 to 10

:func:`load_checkpoint` restores into a model that exists (the one ``fit`` is called on): building a
model here would make this module import :mod:`xpnet.model`, which imports it through ``fit``. For a
model from the file alone, ``xpnet.load(path)`` it first.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from . import backend, io, losses, optim, saving, schedules
from .callbacks import Callback
from .io import ModelFormatError
from .saving import CALLBACK_PREFIX, OPTIMIZER_PREFIX
from .validation import warn

LAST = "last.npz"
"""The file name ``fit(checkpoint_dir=DIR)`` writes every epoch."""

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
    # {key: state, its "arrays" as host arrays} (restore_callbacks); None: a file from before they were kept
    callbacks: dict | None = None
    run: dict | None = None  # run_entry's dict; None: a file from before it was kept


# -- save ---------------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, *, epoch: int, step: int, schedule=None, history=None,
                    extra: dict | None = None, callbacks=(), run: dict | None = None) -> None:
    """Write ``model``, ``optimizer`` and the run's position to ``path`` as one ``.npz``, atomically.

    ``epoch`` is the number of epochs completed and ``step`` the optimizer steps taken; ``history`` a
    ``{name: [values per epoch]}`` dict (``History.history``); ``schedule`` a learning-rate schedule with
    ``get_config()`` (one without is not saved, with a warning); ``extra`` any JSON dict of the caller's;
    ``callbacks`` the callbacks given to ``fit``, whose states (:meth:`~xpnet.callbacks.Callback.state_dict`)
    are kept under their keys (:func:`callback_keys`); ``run`` what the run was asked for and trained
    on (:func:`run_entry`). The random state saved is the model's
    (:meth:`xpnet.Sequential.get_rng_state`). Raises ``ValueError`` for values that cannot be saved and
    ``OSError`` when the file cannot be written (a previous file is then left as it was).
    """
    for name, value in (("epoch", epoch), ("step", step)):
        if not _count(value):
            raise ValueError(f"save_checkpoint: {name} must be a non-negative int, got {value!r}")
    if not isinstance(optimizer, optim.Optimizer) or OPTIMIZERS.get(type(optimizer).__name__) is not type(optimizer):
        raise TypeError(f"save_checkpoint: {optimizer!r} is not one of xpnet's optimizers "
                        f"({', '.join(OPTIMIZERS)}), which a checkpoint can rebuild")
    state = optimizer.state_dict()
    arrays = model.state_dict()
    arrays.update({OPTIMIZER_PREFIX + k: v for k, v in state["state"].items()})
    states, callback_arrays = _callback_states(model, callbacks)
    arrays.update(callback_arrays)
    entry = {"epoch": epoch, "step": step,
             "optimizer": {"class": state["class"], "config": state["config"], "counters": state["counters"]},
             "schedule": _schedule_spec(schedule),
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


def _callback_states(model, callbacks) -> tuple[dict, dict]:
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


def checkpoint_path(checkpoint_dir) -> str:
    """``checkpoint_dir/last.npz``, after making the folder and checking it can be written (before training)."""
    checkpoint_dir = os.fspath(checkpoint_dir)
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise NotADirectoryError(f"checkpoint_dir={checkpoint_dir!r} is a file; give a folder (fit writes "
                                 f"{LAST} into it every epoch)")
    path = os.path.join(checkpoint_dir, LAST)
    try:
        os.makedirs(checkpoint_dir, exist_ok=True)
        io.check_writable(path)
    except OSError as exc:
        raise _unwritable(checkpoint_dir, exc) from None
    return path


_WHY = {errno.EROFS: "it is on a read-only file system", errno.EACCES: "no permission to write there",
        errno.EPERM: "no permission to write there", errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up"}


def _unwritable(checkpoint_dir, exc: OSError) -> OSError:
    """The same kind of OSError, naming the folder, the cause and the fix instead of ``[Errno 30] ...``."""
    why = _WHY.get(exc.errno) or exc.strerror or str(exc)
    found = type(exc)(f"checkpoint_dir {checkpoint_dir!r} cannot be written ({why}), so fit could save no "
                      f"checkpoint; nothing was trained. Give a folder you can write to (checkpoint_dir=..., "
                      f"--checkpoint-dir DIR on the command line)")
    found.errno = exc.errno  # set after: str() of a one-argument OSError is its message alone
    return found


FINGERPRINT_ROWS = 32


def run_entry(dev, X, y, epochs: int, batch_size: int, steps_per_epoch: int) -> dict:
    """What a checkpoint keeps of its run (``"run"``): the epochs and steps per epoch ``fit`` was asked
    for, and the training rows' count, batch size and :func:`fingerprint`."""
    return {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "rows": int(X.shape[0]),
            "batch_size": batch_size, "fingerprint": fingerprint(dev, X, y)}


def fingerprint(dev, X, y) -> str:
    """A cheap fingerprint of the training rows ``X``, ``y`` (on ``dev``, as ``fit`` holds them): a hash of
    their shapes, dtypes and :data:`FINGERPRINT_ROWS` rows at fixed places, the first to the last.

    Taken once per ``fit``, it reads back those rows alone, never the whole data from a GPU. Rows rather
    than sums because they are exact: the same data gives the same fingerprint on every backend, where a
    float sum's rounding depends on the order of its additions. It sees other data, another order and
    another split; an edit to a row between those it reads goes unseen.
    """
    n = X.shape[0]
    at = np.unique(np.linspace(0, n - 1, num=min(n, FINGERPRINT_ROWS)).round().astype("int64"))
    rows = dev.asarray(at, "int64")
    digest = hashlib.blake2b(digest_size=8)
    for a in (X, y):
        part = np.ascontiguousarray(backend.to_numpy(dev.xp.take(a, rows, axis=0)))
        digest.update(f"{tuple(a.shape)} {part.dtype};".encode())
        digest.update(part.tobytes())
    return digest.hexdigest()


def say_if_done(found: Checkpoint, epochs: int, path, verbose, say: bool = True) -> None:
    """A resumed ``fit`` with no epoch left: a line where ``verbose`` when the checkpoint has ``epochs``
    epochs (a finished run), a warning when it has more (``epochs`` was taken for the epochs to add)."""
    if found.epoch > epochs and say:
        warn(f"fit: nothing to do: the checkpoint {os.fspath(path)} already has {found.epoch} epochs, more than "
             f"epochs={epochs} (epochs counts them all, as Keras' initial_epoch: pass epochs={found.epoch + 1} "
             f"or more to train on)")
    elif found.epoch == epochs and verbose and say:
        print(f"nothing to do: the checkpoint {os.fspath(path)} already has {epochs} of {epochs} epochs (epochs "
              f"counts them all: pass epochs={epochs + 1} or more to train on)", flush=True)


def compare_runs(found: Checkpoint, run: dict, path, say: bool = True) -> None:
    """Warn, in one line naming each, about what differs between the data and batch size of a resumed
    ``fit`` (``run``, :func:`run_entry`) and those of the checkpoint's run. A file without them: silent."""
    saved = {} if found.run is None or found.epoch >= run["epochs"] else found.run  # (nothing left to train)
    changes = []
    if saved.get("rows") not in (None, run["rows"]):
        changes.append(f"the data has {run['rows']} rows, the checkpoint was trained on {saved['rows']}")
    elif saved.get("fingerprint") not in (None, run["fingerprint"]):
        changes.append(f"the rows differ from the checkpoint's (as many, {run['rows']}, but another fingerprint: "
                       f"other values or another order)")
    if saved.get("batch_size") not in (None, run["batch_size"]):
        changes.append(f"batch_size {run['batch_size']}, the checkpoint used {saved['batch_size']}")
    if changes and say:
        warn(f"resume from {os.fspath(path)}: " + "; ".join(changes) + f". Training goes on from epoch "
             f"{found.epoch + 1} with them, so it is no longer the run the checkpoint began; give fit the data "
             f"and batch size it was trained on to go on with that one.")


def _schedule_spec(schedule):
    if schedule is None:
        return None
    if not callable(getattr(schedule, "get_config", None)):
        warn(f"save_checkpoint: the schedule {schedule!r} has no get_config(), so the checkpoint holds none; "
             f"a resumed run gets no schedule back")
        return None
    # xpnet.schedules.to_config's form, {"name": ..., **config}, which its from_config rebuilds
    return {"name": getattr(schedule, "name", None) or type(schedule).__name__, **schedule.get_config()}


def _encode_history(history: dict) -> dict:
    # JSON has no inf or nan (io writes strict JSON): such a value goes in as its name, a string.
    def encode(v):
        if hasattr(v, "item") and type(v) not in (int, float, str):
            v = v.item()  # a NumPy scalar (np.float64 is a float too, but its repr is 'np.float64(inf)')
        if isinstance(v, float) and not math.isfinite(v):
            return repr(v)
        return v
    if not isinstance(history, dict):
        raise TypeError(f"save_checkpoint: history must be a dict of lists (History.history), got "
                        f"{type(history).__name__}")
    return {str(k): [encode(v) for v in values] for k, values in history.items()}


def _decode_history(path, history) -> dict:
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ModelFormatError(f"{path}: garbled checkpoint (history is not a dict of lists)")
    names = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
    return {k: [names.get(v, v) if isinstance(v, str) else v for v in values] for k, values in history.items()}


# -- load ---------------------------------------------------------------------------------------
def read_checkpoint(path) -> tuple[dict, dict, dict]:
    """The header's ``checkpoint`` entry (checked), the whole header and all arrays of a checkpoint file.

    Raises ``FileNotFoundError`` naming ``path``, and :class:`~xpnet.io.ModelFormatError` for a file that
    is not a checkpoint (a plain model file included) or is damaged.
    """
    path = os.fspath(path)
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
    for name in ("epoch", "step"):
        if not _count(entry.get(name)):
            raise ModelFormatError(f"{path}: garbled checkpoint ({name} {entry.get(name)!r} is not a "
                                   f"non-negative int)")
    spec = entry.get("optimizer")
    if not (isinstance(spec, dict) and isinstance(spec.get("config"), dict)
            and isinstance(spec.get("counters", {}), dict)):
        raise ModelFormatError(f"{path}: garbled checkpoint (optimizer is not {{'class', 'config', 'counters'}})")
    if spec.get("class") not in OPTIMIZERS:
        raise ModelFormatError(f"{path}: unknown optimizer {spec.get('class')!r} in the checkpoint; known: "
                               f"{', '.join(OPTIMIZERS)}")
    rng = entry.get("rng")
    if not (isinstance(rng, dict) and isinstance(rng.get("shuffle"), dict) and isinstance(rng.get("layers", {}), dict)):
        raise ModelFormatError(f"{path}: garbled checkpoint (rng is not {{'shuffle', 'layers'}})")
    schedule = entry.get("schedule")
    if schedule is not None and not (isinstance(schedule, dict) and isinstance(schedule.get("name"), str)):
        raise ModelFormatError(f"{path}: garbled checkpoint (schedule is not {{'name', ...its config}})")
    if not isinstance(entry.get("extra", {}), dict):
        raise ModelFormatError(f"{path}: garbled checkpoint (extra is not a dict)")
    if not isinstance(entry.get("run", {}), dict):
        raise ModelFormatError(f"{path}: garbled checkpoint (run is not a dict)")
    _decode_history(path, entry.get("history", {}))
    _callbacks_from(path, entry, arrays)
    return entry, header, arrays


def _callbacks_from(path, entry, arrays) -> dict | None:
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
    in ``Checkpoint.callbacks``, for :func:`restore_callbacks`.
    """
    path = os.fspath(path)
    return _checked(path, *read_checkpoint(path), model, optimizer)()


def _checked(path, entry, header, arrays, model, optimizer):
    """Check a checkpoint against ``model`` and ``optimizer``, changing neither; returns the function that
    then restores them and gives the :class:`Checkpoint`."""
    _check_model(path, model, header)
    model_arrays = saving.model_arrays(arrays)
    _check_arrays(path, model.state_dict(), model_arrays)
    spec = entry["optimizer"]
    cls = OPTIMIZERS[spec["class"]]
    config = _rebuildable(spec["config"], entry.get("schedule"))
    try:
        saved = cls(**config)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: the optimizer {spec['class']} cannot be rebuilt from "
                               f"{spec['config']!r}: {exc}") from None
    if optimizer is None:
        optimizer = saved
    elif type(optimizer) is not cls:
        raise ValueError(f"resume from {path}: the checkpoint was trained with {saved!r}, but {optimizer!r} was "
                         f"given; an optimizer's state cannot carry over to another kind. Pass optimizer=None "
                         f"to go on with the checkpoint's, or start a new run from its weights: "
                         f"xpnet.load({path!r}) and fit without resume_from.")
    state = {"class": spec["class"], "config": config, "counters": spec.get("counters", {}),
             "state": {k[len(OPTIMIZER_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}}
    try:  # on a throwaway optimizer, against the host arrays of the parameters
        cls(**config).load_state_dict(state, {k: model_arrays[k] for k in model.parameters()})
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
    schedule = _schedule_from(path, entry.get("schedule"))
    history = _decode_history(path, entry.get("history", {}))
    callbacks = _callbacks_from(path, entry, arrays)

    def restore() -> Checkpoint:
        before = model.get_rng_state()
        try:
            model.set_rng_state(entry["rng"])
        except (TypeError, ValueError, KeyError) as exc:
            model.set_rng_state(before)
            raise ModelFormatError(f"{path}: garbled checkpoint (its random state cannot be restored: {exc})") from None
        try:
            saving.restore(path, model, header, model_arrays)
        except ModelFormatError:
            model.set_rng_state(before)
            raise
        given = optimizer.get_config()
        optimizer.load_state_dict(state, model.parameters())
        changed = {k: (given[k], v) for k, v in optimizer.get_config().items() if given.get(k) != v}
        if changed and entry.get("schedule") is not None:
            changed.pop("lr", None)  # the schedule sets the learning rate from the step, whatever was given
        if changed:
            warn(f"resume from {path}: the checkpoint's {type(optimizer).__name__} configuration wins over the "
                 f"one given: " + ", ".join(f"{k}={new!r} (given {old!r})" for k, (old, new) in changed.items()))
        return Checkpoint(epoch=entry["epoch"], step=entry["step"], optimizer=optimizer, loss=model.loss,
                          schedule=schedule, history=history, extra=entry.get("extra", {}), callbacks=callbacks,
                          run=entry.get("run"))

    return restore


def _rebuildable(config: dict, schedule) -> dict:
    """The optimizer's saved configuration, with the schedule's base lr for a saved lr that no optimizer takes.

    Under a schedule the lr saved is the schedule's last value, which is 0 for a cosine down to
    ``min_lr=0`` that ended before the run did; fit sets the lr from the schedule before every use anyway.
    """
    lr, base = config.get("lr"), (schedule or {}).get("lr")
    if isinstance(lr, (int, float)) and lr <= 0 and isinstance(base, (int, float)) and base > 0:
        return {**config, "lr": base}
    return config


class Resume:
    """A checkpoint read and checked against a model and ``fit``'s arguments, nothing changed yet
    (:func:`prepare_resume`): ``fit`` checks its data against :attr:`loss` before :meth:`restore` loads it,
    so that bad data is refused with the model as it was."""

    def __init__(self, model, path: str, loss: losses.Loss, restore):
        self.model, self.path, self.loss, self._restore = model, path, loss, restore

    def restore(self) -> Checkpoint:
        """Load the checkpoint into the model and the optimizer (:func:`load_checkpoint`'s rules)."""
        found = self._restore()
        found.loss = self.model.loss = self.loss
        return found


def prepare_resume(model, path, loss=None, optimizer=None, lr=None) -> Resume:
    """Read ``path`` and check it against ``model`` and ``fit``'s ``loss``, ``optimizer`` and ``lr``, changing
    nothing; :meth:`Resume.restore` then loads it.

    ``loss=None`` takes the checkpoint's; another loss than the checkpoint's is a ``ValueError`` (that
    is a new run, not a resumed one). An optimizer given by name is built first (with ``lr``); then the
    rules of :func:`load_checkpoint` apply.
    """
    if optimizer is not None:
        optimizer = optim.get(optimizer, lr)
    elif lr is not None:
        warn(f"fit: lr={lr!r} is ignored when resuming with the checkpoint's optimizer (optimizer=None); "
             f"pass the optimizer to change its settings")
    path = os.fspath(path)
    entry, header, arrays = read_checkpoint(path)
    if loss is not None:
        loss = losses.get(loss)
        saved = header.get("loss")
        if saved is not None and (saved["class"], saved.get("config", {})) != (type(loss).__name__, loss.get_config()):
            raise ValueError(f"resume from {path}: the checkpoint was trained with the loss "
                             f"{saved['class']}({saved.get('config', {})}), but {loss!r} was given. Pass "
                             f"loss=None to go on with the checkpoint's.")
    elif header.get("loss") is None:
        raise ValueError(f"resume from {path}: the checkpoint names no loss xpnet can rebuild "
                         f"(a custom one?): pass loss=...")
    else:
        loss = saving.loss_from(path, header["loss"])
    return Resume(model, path, loss, _checked(path, entry, header, arrays, model, optimizer))


def resume(model, path, loss=None, optimizer=None, lr=None) -> Checkpoint:
    """:func:`prepare_resume` and :meth:`Resume.restore` at once: :func:`load_checkpoint` for ``fit``'s
    ``loss``, ``optimizer`` and ``lr``."""
    return prepare_resume(model, path, loss, optimizer, lr).restore()


def restore_callbacks(found: Checkpoint, callbacks, path, active=None, say: bool = True) -> None:
    """Give each of ``callbacks`` (``fit``'s, as given) that has a state the one ``found`` keeps under its
    key (:func:`callback_keys`), through its ``load_state_dict``.

    ``active`` (default: all of them) are those this process runs: a distributed ``fit``'s other ranks run
    no ``rank_zero_only`` callback, but count it in the keys. A state no callback takes, or a callback
    with no state kept, is a warning (``say``: rank 0 alone says it), and that callback starts afresh. A
    state that a callback refuses raises :class:`~xpnet.io.ModelFormatError`.
    """
    given = callback_keys(callbacks)
    saved = found.callbacks
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


def _check_model(path, model, header) -> None:
    want = json.loads(json.dumps(model.get_config()["layers"]))  # tuples become lists, as in the file
    have = header["architecture"]["layers"]
    if want != have:
        differ = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
        detail = (f"; layer {differ} is {_layer(want, differ)} in the model, {_layer(have, differ)} in the "
                  f"checkpoint")
        raise ValueError(f"resume from {path}: the model's layers {_layers(want)} are not the checkpoint's "
                         f"{_layers(have)}{detail}; build the same model (or xpnet.load({path!r}))")
    if header["dtype"] != model.dtype:
        raise ValueError(f"resume from {path}: the checkpoint is {header['dtype']} but the model is "
                         f"{model.dtype}; a resumed run must compute in the same dtype")


def _check_arrays(path, state: dict, arrays: dict) -> None:
    """The checkpoint's model arrays against the model's ``state_dict()``: the same names and shapes."""
    if set(state) != set(arrays):
        raise ModelFormatError(f"{path}: the model has arrays {sorted(state)} but the checkpoint holds "
                               f"{sorted(arrays)}")
    for k, v in arrays.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ModelFormatError(f"{path}: array {k!r} has shape {v.shape}, the model's {tuple(state[k].shape)}")


def _layer(specs, i) -> str:
    if i >= len(specs):
        return "missing"
    args = ", ".join(f"{k}={v!r}" for k, v in specs[i].get("config", {}).items())
    return f"{specs[i]['class']}({args})"


def _layers(specs) -> str:
    return "[" + ", ".join(s["class"] for s in specs) + "]"


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
    want, have = _schedule_spec(given) or {}, _schedule_spec(found.schedule)
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
    known = all(_count(old.get(k)) for k in ("epochs", "steps_per_epoch"))
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


def _schedule_from(path, spec):
    if spec is None:
        return None
    if spec.get("name") not in schedules.SCHEDULES:
        warn(f"load_checkpoint: {path}: the schedule {spec.get('name')!r} is not one of xpnet's, so it cannot be "
             f"rebuilt from the file; pass it again to the resumed fit(schedule=...)")
        return None
    try:
        return schedules.from_config(spec)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"{path}: the schedule {spec['name']!r} cannot be rebuilt: {exc}") from None
