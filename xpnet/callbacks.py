"""Callbacks: code that ``fit`` calls at the edges of training, epochs and read-back windows (as Keras').

Subclass :class:`Callback` and override the hooks you need; ``fit`` sets ``callback.model`` and
``callback.params`` (``epochs``, ``steps`` per epoch, ``samples``, ``check_every``, ``verbose``) before
training starts. To stop after the current epoch set ``self.model.stop_training = True``. A plain
function ``f(epoch, logs)`` is accepted too: returning ``True`` stops training.

``on_batch_end`` is called once per read-back window (every ``check_every`` steps and at the end of an
epoch), like Keras' batch hooks under ``steps_per_execution``: the step loop itself never waits for the
device. Its ``logs`` hold ``losses`` (the window's per-step losses, host float64), ``loss`` (the running
mean over the epoch so far), ``accuracy`` (likewise, for classification) and ``samples`` (seen this
epoch).
"""

from __future__ import annotations

import math
import sys

from array_api_compat import array_namespace

from ._inplace import copy_


class Callback:
    """Base class: every hook does nothing. ``model`` and ``params`` are set by ``fit``."""

    model = None
    params: dict = {}

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        pass

    def on_batch_end(self, step: int, logs=None) -> None:
        """Called once per read-back window; ``step`` is the window's last step in the epoch (from 0)."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass


class LambdaCallback(Callback):
    """A plain function ``f(epoch, logs)`` as a callback: returning ``True`` (exactly) stops training."""

    def __init__(self, function):
        self.function = function

    def on_epoch_end(self, epoch, logs=None):
        if self.function(epoch, logs) is True:
            self.model.stop_training = True

    def __repr__(self):
        return f"LambdaCallback({self.function!r})"


class CallbackList:
    """Calls each hook on every callback, in order; wraps plain functions in :class:`LambdaCallback`."""

    def __init__(self, callbacks, model, params: dict):
        self.callbacks = [cb if isinstance(cb, Callback) else LambdaCallback(cb) for cb in callbacks]
        for cb in self.callbacks:
            cb.model, cb.params = model, params

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_batch_end(self, step, logs=None):
        for cb in self.callbacks:
            cb.on_batch_end(step, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)


class History(Callback):
    """Per-epoch metrics, like Keras': ``history["loss"]``, ``history["val_accuracy"]``, ...

    Keys: ``loss``, ``accuracy`` (classification only), ``val_loss``, ``val_accuracy`` (with
    ``validation_data``), ``seconds`` and ``samples_per_s``. ``fit`` returns it.
    """

    def __init__(self):
        self.history: dict[str, list] = {}

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def on_epoch_end(self, epoch, logs=None):
        self.append(logs)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __repr__(self):
        return f"History({self.history!r})"


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the model was reset to its last finite weights."""

    def __init__(self, epoch: int, step: int, value: float, restored_step: int):
        self.epoch, self.step, self.value, self.restored_step = epoch, step, value, restored_step
        super().__init__(
            f"training diverged: the loss was {value} at epoch {epoch + 1}, step {step + 1}. The model keeps "
            f"its last finite weights (from before step {restored_step + 1} of that epoch). Try a lower "
            f"learning rate (e.g. a tenth), a smaller init, or check the data for NaN/inf.")


def _snapshot(params, into=None) -> dict | None:
    """Copies of the parameters if they are all finite, else ``None``.

    ``into`` (an earlier snapshot) is overwritten in place where its arrays are writeable, so there is
    never a second copy of the weights alive, nor an allocation per window.
    """
    for p in params.values():
        xp = array_namespace(p)
        if not bool(xp.all(xp.isfinite(p))):
            return None
    return {k: copy_(None if into is None else into.get(k), p) for k, p in params.items()}


class DivergenceRollback(Callback):
    """Raises :class:`TrainingDiverged` when a window's loss is NaN or infinite, after putting back the
    weights from before that window.

    The weights are copied at the start of each epoch and after each finite window (not after an epoch's
    last one: the next epoch copies them anyway). The check costs nothing extra: it reads the losses
    that the window's one read-back brought to the host.
    """

    def __init__(self):
        self.good, self.epoch, self.window_start = None, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.good = _snapshot(self.model.parameters(), self.good)
        self.epoch, self.window_start = epoch, 0

    def on_batch_end(self, step, logs=None):
        values = logs["losses"].tolist()
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            params = self.model.parameters()
            for k, v in (self.good or {}).items():
                params[k] = v
            raise TrainingDiverged(self.epoch, self.window_start + bad, float(values[bad]), self.window_start)
        self.window_start = step + 1
        if step < self.params["steps"] - 1:
            self.good = _snapshot(self.model.parameters(), self.good) or self.good


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr, updated once per read-back window; only on a terminal."""

    def __init__(self):
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.params["verbose"] < 1 or not sys.stderr.isatty():
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params["samples"], desc=f"epoch {epoch + 1}/{self.params['epochs']}",
                        unit="sample", leave=False, dynamic_ncols=True, file=sys.stderr)

    def on_batch_end(self, step, logs=None):
        if self.bar is not None:
            self.bar.update(logs["samples"] - self.bar.n)
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

    def on_epoch_end(self, epoch, logs=None):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLine(Callback):
    """Prints one line per epoch (loss, accuracies, throughput, device) when ``verbose >= 1``."""

    def on_epoch_end(self, epoch, logs=None):
        if self.params["verbose"] >= 1:
            print(format_epoch(epoch, self.params["epochs"], logs, self.model.device), flush=True)


def format_epoch(epoch: int, epochs: int, logs: dict, dev) -> str:
    """One line per epoch: loss, accuracies, throughput and device."""
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {logs['loss']:.4f}"]
    if "accuracy" in logs:
        parts.append(f"train acc {logs['accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"test loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"test acc {logs['val_accuracy']:.4f}")
    parts += [f"{logs['samples_per_s']:,.0f} samples/s", f"{logs['seconds']:.2f} s", f"{dev}"]
    return "  ".join(parts)
