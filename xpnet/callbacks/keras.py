"""Keras' callbacks, with Keras' names, arguments and rules: EarlyStopping, ModelCheckpoint,
LearningRateScheduler, CSVLogger."""

from __future__ import annotations

import csv
import math
import os

from .. import jsonfloat, saving
from .._inplace import copy_
from ..validation import warn
from .base import Callback
from .loop import _put_back, _state


def _mode(owner: str, monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` follows Keras: ``max`` for a name with ``acc`` in it, else ``min``."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _to_json(value):
    """A float for a checkpoint's JSON (:mod:`xpnet.jsonfloat`)."""
    return None if value is None else jsonfloat.encode(float(value))


def _from_json(owner: str, name: str, value, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{owner}: {name} {value!r} in the checkpoint is not a number")
    try:
        return float(value)  # "inf", "-inf" and "nan" too
    except ValueError:
        raise ValueError(f"{owner}: {name} {value!r} in the checkpoint is not a number") from None


def _count(owner: str, state: dict, name: str) -> int:
    value = state.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{owner}: {name} {value!r} in the checkpoint is not an int >= 0")
    return value


def _same_watch(owner: str, state: dict, monitor: str, mode: str) -> bool:
    """Whether the checkpoint's state watched what this callback watches; a warning if not."""
    if (state.get("monitor"), state.get("mode")) == (monitor, mode):
        return True
    warn(f"{owner}: the checkpoint's watched {state.get('monitor')!r} (mode {state.get('mode')!r}), this one "
         f"{monitor!r} (mode {mode!r}); its best so far does not carry over, so it starts afresh")
    return False


def _same_file(path: str, saved) -> bool:
    if not isinstance(saved, str):
        return False
    try:
        return os.path.samefile(path, saved)
    except OSError:  # the checkpoint's file is gone
        return os.path.abspath(path) == saved


def _monitored(owner: str, monitor: str, logs) -> float:
    if not logs or monitor not in logs:
        hint = " (val_ keys need validation_data or validation_split in fit)" if monitor.startswith("val_") else ""
        raise ValueError(f"{owner}: monitor={monitor!r} is not in the epoch's logs{hint}; they hold "
                         f"{sorted(logs or {})}")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (``keras.callbacks.EarlyStopping``).

    An epoch improves on the best so far when ``current < best - min_delta`` (mode ``min``) or
    ``current > best + min_delta`` (mode ``max``; ``auto`` picks ``max`` for accuracies). After
    ``patience`` epochs in a row without improvement training stops (``patience=0``: at the first).
    With ``restore_best_weights`` the weights of the best epoch are copied on the device after each
    improvement and copied back into the model when training ends (stopped early or not), as Keras 3
    does. ``baseline``: training stops unless the monitor beats it within ``patience`` epochs.
    ``start_from_epoch``: epochs before it are not watched (a warm-up). ``stopped_epoch`` and
    ``best_epoch`` say what happened (from 0; ``stopped_epoch`` stays 0 if it never stopped). With
    ``verbose=1`` it prints one line when training ends, if it stopped training or put back the weights of
    an earlier epoch than the last: ``EarlyStopping: stopped at epoch 7 of 30 (val_loss: 3 epochs without
    improvement); best epoch 4 (val_loss 0.2310) restored``.

    A checkpoint (``fit(checkpoint_dir=...)``) keeps its ``wait``, ``best``, ``best_epoch`` and the best
    weights (a second copy of the model in the file), so a resumed ``fit`` stops at the epoch, and with
    the weights, of the run that never stopped.
    """

    _PARTS = ("params", "buffers")  # the halves of _state(model), as the checkpoint names its arrays

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        self.monitor, self.verbose = monitor, verbose
        self.mode = _mode("EarlyStopping", monitor, mode)
        self.min_delta = abs(float(min_delta))
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.patience, self.baseline = patience, baseline
        self.restore_best_weights, self.start_from_epoch = bool(restore_best_weights), int(start_from_epoch)
        self.on_train_begin()

    def _improves(self, current: float, reference) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch, self.best, self.best_weights = 0, 0, 0, None, None
        self._stopped = False  # by this run (a resumed one loads stopped_epoch, but has not stopped yet)
        self._last = None  # this run's last epoch

    def on_epoch_end(self, epoch, logs=None):
        self._last = epoch
        if epoch < self.start_from_epoch:
            return
        current = _monitored("EarlyStopping", self.monitor, logs)
        improved = self._improves(current, self.best)
        if self.restore_best_weights and (improved or self.best_weights is None):
            self._keep()  # Keras: the first watched epoch stands in as the best (even a NaN) until one beats it
        self.wait += 1
        if improved:
            self.best, self.best_epoch = current, epoch
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = self._stopped = True

    def _keep(self):
        # Overwrites this run's previous copy in place where it can: one copy of the weights, no allocation.
        old = self.best_weights or {}
        self.best_weights = {(i, k): copy_(old.get((i, k)), p)
                             for i, arrays in enumerate(_state(self.model)) for k, p in arrays.items()}

    def on_train_end(self, logs=None):
        restored = self.restore_best_weights and self.best_weights is not None
        if restored:
            _put_back(_state(self.model), self.best_weights, copy=True)
        if self.verbose > 0 and (self._stopped or restored and self.best_epoch != self._last):
            print(self._report(restored), flush=True)

    def _report(self, restored: bool) -> str:
        """The one line that says what it did: where it stopped, and whose weights the model now has."""
        value = "?" if self.best is None else f"{self.best:.4f}"
        best = f"best epoch {self.best_epoch + 1} ({self.monitor} {value})"
        if not self._stopped:
            return f"EarlyStopping: did not stop; {best} restored"
        stopped = (f"EarlyStopping: stopped at epoch {self.stopped_epoch + 1} of {self.params['epochs']} "
                   f"({self.monitor}: {self.wait} epoch{'s' * (self.wait != 1)} without improvement)")
        if restored:
            return f"{stopped}; {best} restored"
        return f"{stopped}; {best}, not restored (restore_best_weights=False): the model has epoch " \
               f"{self.stopped_epoch + 1}'s weights"

    def state_dict(self) -> dict:
        state = {"monitor": self.monitor, "mode": self.mode, "wait": self.wait, "best": _to_json(self.best),
                 "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}
        if self.best_weights is not None:
            state["arrays"] = {f"{self._PARTS[i]}/{k}": v for (i, k), v in self.best_weights.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        if not _same_watch("EarlyStopping", state, self.monitor, self.mode):
            return
        wait, best_epoch, stopped_epoch = (_count("EarlyStopping", state, k)
                                           for k in ("wait", "best_epoch", "stopped_epoch"))
        best = _from_json("EarlyStopping", "best", state.get("best"), optional=True)
        weights, arrays = None, state.get("arrays") or {}
        if self.restore_best_weights and arrays:
            weights = self._weights_from(arrays)
        elif self.restore_best_weights and best is not None:
            warn(f"EarlyStopping: the checkpoint holds no best weights (its EarlyStopping did not restore "
                 f"them), so those of epoch {best_epoch + 1} are lost: the next watched epoch's stand in")
        self.wait, self.best, self.best_epoch, self.stopped_epoch = wait, best, best_epoch, stopped_epoch
        self.best_weights = weights

    def _weights_from(self, arrays: dict) -> dict:
        """The checkpoint's best weights (host arrays), checked against the model, as copies on its device."""
        state = _state(self.model)
        names = {f"{self._PARTS[i]}/{k}": (i, k) for i, part in enumerate(state) for k in part}
        if set(arrays) != set(names):
            raise ValueError(f"EarlyStopping: the checkpoint's best weights are {sorted(arrays)}, the model's "
                             f"arrays {sorted(names)}")
        dev, weights = self.model.device, {}
        for name, (i, k) in names.items():
            if tuple(arrays[name].shape) != tuple(state[i][k].shape):
                raise ValueError(f"EarlyStopping: the best weights' {name} has shape {tuple(arrays[name].shape)}, "
                                 f"the model's {tuple(state[i][k].shape)}")
            weights[(i, k)] = dev.xp.asarray(dev.asarray(arrays[name], self.model.dtype, c_order=True), copy=True)
        return weights


class ModelCheckpoint(Callback):
    """Save the model (:func:`xpnet.save`, atomic) at the end of each epoch (``keras.callbacks.ModelCheckpoint``).

    ``filepath`` may hold ``{epoch}`` (from 1) and any key of the epoch's logs, formatted as Keras does:
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. Missing folders are made. With ``save_best_only`` a
    file is written only when ``monitor`` beats the best so far (``<`` in mode ``min``, ``>`` in
    ``max``; ``auto`` picks ``max`` for accuracies); the best is kept across ``fit`` calls, as in Keras,
    and in ``fit``'s checkpoints, so a resumed run does not overwrite the best file with a worse epoch.
    ``xpnet.load(path)`` reads the file back.
    """

    rank_zero_only = True  # a distributed fit runs it on rank 0 only (the weights are the same on all)

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 mode: str = "auto"):
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only = bool(save_best_only)
        self.mode = _mode("ModelCheckpoint", monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot format filepath {self.filepath!r} ({exc!r}); it may use "
                             f"{{epoch}} and the log keys {sorted(logs)}") from exc
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                if self.verbose > 0:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}", flush=True)
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving the model to {path}", flush=True)
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving the model to {path}", flush=True)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        saving.save(self.model, path)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "mode": self.mode, "best": _to_json(self.best)}

    def load_state_dict(self, state: dict) -> None:
        if _same_watch("ModelCheckpoint", state, self.monitor, self.mode):
            self.best = _from_json("ModelCheckpoint", "best", state.get("best"))


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start: ``optimizer.lr = schedule(epoch, lr)``
    (``keras.callbacks.LearningRateScheduler``).

    ``schedule(epoch, lr)`` gets the epoch (from 0) and the current rate and returns the new one (a
    function of the epoch alone, ``schedule(epoch)``, is accepted too, as Keras does). It acts on the
    optimizer ``fit`` steps (``self.optimizer``). For a rate that changes every step, or one a
    checkpoint can rebuild, give ``fit`` a ``schedule=`` from :mod:`xpnet.schedules` instead; ``fit``
    refuses both at once.
    """

    def __init__(self, schedule, verbose: int = 0):
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr, got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.optimizer.lr)
        try:
            new = self.schedule(epoch, lr)
        except TypeError:  # Keras' fallback for a schedule of the epoch alone
            new = self.schedule(epoch)
        ok = isinstance(new, (int, float)) and not isinstance(new, bool) and math.isfinite(new) and new >= 0
        if not ok:
            raise ValueError(f"LearningRateScheduler: the schedule returned {new!r} for epoch {epoch}; it must "
                             f"return a finite number >= 0 (a Python float)")
        self.optimizer.lr = float(new)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new)}.", flush=True)


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (``keras.callbacks.CSVLogger``).

    Columns: ``epoch`` (from 0, as Keras) then the logs' keys in sorted order. ``append=True`` adds to
    an existing file (its header is written only if the file was empty); without it the file is emptied
    when the run's first row is written. Each row is flushed when it is written, so an interrupted run
    keeps its rows. A resumed ``fit`` (``resume_from``) goes on with the file the checkpoint's run wrote,
    whatever ``append`` says: the earlier epochs' rows stay, the header is not written again, and rows
    written after the checkpoint (of epochs the resumed run trains again) are replaced, with a warning.
    """

    rank_zero_only = True  # a distributed fit runs it on rank 0 only (the weights are the same on all)

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.file, self.writer, self.keys, self.empty_first = None, None, None, False

    def on_train_begin(self, logs=None):
        # Opened without emptying it: a resumed fit goes on with its rows (load_state_dict comes next).
        self.file = open(self.filename, "a", newline="", encoding="utf-8")
        self.writer, self.keys, self.empty_first = None, None, not self.append

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.writer is None:
            if self.empty_first:
                self.file.truncate(0)
            self.keys = self.keys or sorted(logs)
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys], delimiter=self.sep,
                                         lineterminator="\n")
            if self._size() == 0:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
        self.file, self.writer = None, None

    def _size(self) -> int:
        if self.file is not None:
            return os.fstat(self.file.fileno()).st_size
        return os.path.getsize(self.filename) if os.path.exists(self.filename) else 0

    def state_dict(self) -> dict:
        # The file's length when the checkpoint is written: its rows are those of the epochs the checkpoint holds.
        return {"filename": os.path.abspath(self.filename), "bytes": self._size(), "keys": self.keys}

    def load_state_dict(self, state: dict) -> None:
        if not _same_file(self.filename, state.get("filename")):
            warn(f"CSVLogger: the checkpoint's run wrote {state.get('filename')}, this one writes {self.filename}: "
                 f"that file is started as a new one")
            return
        saved, keys = _count("CSVLogger", state, "bytes"), state.get("keys")
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            raise ValueError(f"CSVLogger: keys {keys!r} in the checkpoint is not a list of column names")
        self.empty_first, self.keys = False, keys
        size = self._size()
        if size < saved:
            warn(f"CSVLogger: {self.filename} is shorter ({size} bytes) than when the checkpoint was written "
                 f"({saved} bytes); the resumed run's rows are added after what it holds")
        elif size > saved:
            self._cut(saved)

    def _cut(self, saved: int) -> None:
        """Drop the rows written after the checkpoint (the run stopped between a row and its checkpoint):
        the resumed run writes those epochs' rows again. Only at a row's end, else the file is left as it is."""
        with open(self.filename, "rb") as f:
            f.seek(max(saved - 1, 0))
            tail = f.read()
        if saved == 0 or not tail.startswith(b"\n"):
            warn(f"CSVLogger: {self.filename} has changed since the checkpoint was written ({saved} bytes then, "
                 f"not the end of a row now); the resumed run's rows are added after what it holds")
            return
        rows = tail[1:].count(b"\n")
        warn(f"CSVLogger: {self.filename} holds {rows} row(s) written after the checkpoint, of epochs the resumed "
             f"run trains again; they are replaced by its own")
        self.file.truncate(saved)
