"""Keras' LearningRateScheduler: the optimizer's rate set by a function of the epoch."""

from __future__ import annotations

import math

from .base import Callback


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
