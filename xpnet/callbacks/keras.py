"""Keras' callbacks, with Keras' names, arguments and rules: EarlyStopping, ModelCheckpoint,
LearningRateScheduler, CSVLogger."""

from __future__ import annotations

import csv
import math
import os

from .. import saving
from .._inplace import copy_
from .base import Callback
from .loop import _put_back, _state


def _mode(owner: str, monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` follows Keras: ``max`` for a name with ``acc`` in it, else ``min``."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


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
    ``best_epoch`` say what happened (from 0; ``stopped_epoch`` stays 0 if it never stopped).
    """

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

    def on_epoch_end(self, epoch, logs=None):
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
            self.model.stop_training = True
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: early stopping ({self.monitor} best {self.best:.6g} at epoch "
                      f"{self.best_epoch + 1})", flush=True)

    def _keep(self):
        # Overwrites this run's previous copy in place where it can: one copy of the weights, no allocation.
        old = self.best_weights or {}
        self.best_weights = {(i, k): copy_(old.get((i, k)), p)
                             for i, arrays in enumerate(_state(self.model)) for k, p in arrays.items()}

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring the weights of epoch {self.best_epoch + 1}, the best.", flush=True)
            _put_back(_state(self.model), self.best_weights, copy=True)


class ModelCheckpoint(Callback):
    """Save the model (:func:`xpnet.save`, atomic) at the end of each epoch (``keras.callbacks.ModelCheckpoint``).

    ``filepath`` may hold ``{epoch}`` (from 1) and any key of the epoch's logs, formatted as Keras does:
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. Missing folders are made. With ``save_best_only`` a
    file is written only when ``monitor`` beats the best so far (``<`` in mode ``min``, ``>`` in
    ``max``; ``auto`` picks ``max`` for accuracies); the best is kept across ``fit`` calls, as in Keras.
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
    an existing file (its header is written only if the file was empty). Each row is flushed when it is
    written, so an interrupted run keeps its rows.
    """

    rank_zero_only = True  # a distributed fit runs it on rank 0 only (the weights are the same on all)

    def __init__(self, filename, separator: str = ",", append: bool = False):
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.file, self.writer, self.keys = None, None, None

    def on_train_begin(self, logs=None):
        header = not (self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0)
        self.file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self.writer, self.keys, self.header = None, None, header

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.writer is None:
            self.keys = sorted(logs)
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys], delimiter=self.sep,
                                         lineterminator="\n")
            if self.header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
        self.file, self.writer = None, None
