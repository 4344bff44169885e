"""Resuming a run: ``fit(resume_from=PATH)``'s one :class:`Resume` object.

It reads the checkpoint and checks it against the model and fit's ``loss``, ``optimizer`` and ``lr`` once,
changing nothing, so that fit can check its data before anything is loaded; then :meth:`Resume.restore`
loads the model, the optimizer and the random state, and its other methods give fit the schedule to go on
with, say what changed in the run, and give the callbacks their states back.
"""

from __future__ import annotations

import hashlib
import os

from .. import backend, losses, optim, saving
from ..callbacks.state import restore_states
from ..checkpoint import Checkpoint, Loader
from ..validation import warn
from .stretch import resumed_schedule


class Resume:
    """The checkpoint at ``path``, read and checked against ``model`` and fit's ``loss``, ``optimizer`` and
    ``lr``, nothing changed yet.

    ``loss=None`` takes the checkpoint's; another loss than the checkpoint's is a ``ValueError`` (that
    is a new run, not a resumed one). An optimizer given by name is built first (with ``lr``); then the
    rules of :func:`xpnet.checkpoint.load_checkpoint` apply. ``say=False`` (a distributed fit's other
    ranks) keeps the warnings and lines to rank 0.
    """

    def __init__(self, model, path, loss=None, optimizer=None, lr=None, say: bool = True):
        if optimizer is not None:
            optimizer = optim.get(optimizer, lr)
        elif lr is not None:
            warn(f"fit: lr={lr!r} is ignored when resuming with the checkpoint's optimizer (optimizer=None); "
                 f"pass the optimizer to change its settings")
        self.model, self.path, self.say = model, os.fspath(path), say
        self.loader = Loader(self.path)
        self.loss = _loss(self.path, self.loader.header, loss)
        self.loader.check(model, optimizer)
        self.found: Checkpoint | None = None  # once restored

    def restore(self) -> Checkpoint:
        """Load the checkpoint into the model and the optimizer (:func:`~xpnet.checkpoint.load_checkpoint`'s
        rules), with fit's loss; returns where the run stood."""
        found = self.found = self.loader.restore()
        found.loss = self.loss
        self.model.trained_with(self.loss)  # the range stays the checkpoint's until fit widens it
        return found

    def schedule(self, given, run: dict):
        """The learning-rate schedule to go on with (:func:`~xpnet.train.stretch.resumed_schedule`)."""
        return resumed_schedule(self.found, given, run, say=self.say)

    def compare_runs(self, run: dict) -> None:
        compare_runs(self.found, run, self.path, say=self.say)

    def say_if_done(self, epochs: int, verbose) -> None:
        say_if_done(self.found, epochs, self.path, verbose, say=self.say)

    def restore_callbacks(self, callbacks, active=None) -> None:
        """Give fit's callbacks (as given; ``active``: those this rank runs) their states, after
        ``on_train_begin``, which sets up a fresh run: the checkpoint's state wins."""
        restore_states(self.found.callbacks, callbacks, self.path, active=active, say=self.say)


def _loss(path: str, header: dict, loss):
    """fit's loss, checked against the checkpoint's; the checkpoint's for ``None``."""
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
    return loss


FINGERPRINT_ROWS = 32


def run_entry(data, epochs: int, batch_size: int, steps_per_epoch: int) -> dict:
    """What a checkpoint keeps of its run (``"run"``): the epochs and steps per epoch ``fit`` was asked
    for, the batch size, and what ``data`` (fit's rows, or a source's windows) says of itself: the rows'
    (or ids') count and :func:`fingerprint`, and a source's block size."""
    found = data.describe()
    return {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "rows": found.pop("rows"),
            "batch_size": batch_size, **found}


def fingerprint(dev, *arrays, tag: str | None = None) -> str:
    """A cheap fingerprint of the training data ``arrays`` (``X, y``; a text's ids) on ``dev``, as ``fit``
    holds them: a hash of their shapes, dtypes and :data:`FINGERPRINT_ROWS` rows at fixed places, the first
    to the last, and of ``tag`` where given (a text source's block size).

    Taken once per ``fit``, it reads back those rows alone, never the whole data from a GPU. Rows rather
    than sums because they are exact: the same data gives the same fingerprint on every backend, where a
    float sum's rounding depends on the order of its additions. It sees other data, another order and
    another split; an edit to a row between those it reads goes unseen. For a text, 32 ids spread over it:
    another text of the same length differs at one of them all but surely.
    """
    digest = hashlib.blake2b(digest_size=8)
    for a in arrays:
        rows = dev.asarray(_spread(a.shape[0], FINGERPRINT_ROWS), "int64")
        part = backend.to_numpy(dev.xp.take(a, rows, axis=0))
        digest.update(f"{tuple(a.shape)} {part.dtype};".encode())
        digest.update(part.tobytes())  # row-major bytes, whatever the host copy's layout
    if tag is not None:
        digest.update(tag.encode())
    return digest.hexdigest()


def _spread(n: int, k: int) -> list[int]:
    """Up to ``k`` distinct indices spread evenly over ``0 .. n - 1``, the first and the last included: NumPy's
    ``unique(linspace(0, n - 1, min(n, k)).round())``, computed the same way (``i * step``, the last set
    to ``n - 1``, halves to even) so that a checkpoint's fingerprint keeps its value."""
    k = min(n, k)
    if k < 2:
        return [0] * k
    step = (n - 1) / (k - 1)
    return sorted({round(i * step) for i in range(k - 1)} | {n - 1})


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
    rows = "ids" if "block_size" in run else "rows"  # a text source counts its ids
    if saved.get("rows") not in (None, run["rows"]):
        changes.append(f"the data has {run['rows']} {rows}, the checkpoint was trained on {saved['rows']}")
    elif saved.get("block_size", run.get("block_size")) != run.get("block_size"):
        changes.append(f"block_size {run.get('block_size')}, the checkpoint's windows had {saved.get('block_size')}")
    elif saved.get("fingerprint") not in (None, run["fingerprint"]):
        changes.append(f"the {rows} differ from the checkpoint's (as many, {run['rows']}, but another fingerprint: "
                       f"other values or another order)")
    if saved.get("batch_size") not in (None, run["batch_size"]):
        changes.append(f"batch_size {run['batch_size']}, the checkpoint used {saved['batch_size']}")
    if changes and say:
        warn(f"resume from {os.fspath(path)}: " + "; ".join(changes) + f". Training goes on from epoch "
             f"{found.epoch + 1} with them, so it is no longer the run the checkpoint began; give fit the data "
             f"and batch size it was trained on to go on with that one.")

