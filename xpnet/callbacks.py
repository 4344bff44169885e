"""Callbacks: code that ``fit`` calls at the edges of training, epochs and read-back windows (as Keras').

Subclass :class:`Callback` and override the hooks you need; ``fit`` sets ``callback.model``,
``callback.optimizer`` (the optimizer being stepped: set its ``lr`` to change the rate) and
``callback.params`` (``epochs``, ``steps`` per epoch, ``samples``, ``check_every``, ``verbose``) before
training starts. To stop after the current epoch set ``self.model.stop_training = True``. A plain
function ``f(epoch, logs)`` is accepted too: returning ``True`` stops training.

``on_batch_end`` is called once per read-back window (every ``check_every`` steps and at the end of an
epoch), like Keras' batch hooks under ``steps_per_execution``: the step loop itself never waits for the
device. Its ``logs`` hold ``losses`` (the window's per-step losses, host float64), ``loss`` (the running
mean over the epoch so far), ``accuracy`` (likewise, for classification), ``samples`` (seen this
epoch) and ``state_finite`` (whether every parameter and buffer was finite at the window's end: it came
back in the same transfer as the losses).

Keras' own callbacks, with Keras' names, arguments and rules: :class:`EarlyStopping`,
:class:`ModelCheckpoint`, :class:`LearningRateScheduler`, :class:`CSVLogger`. Where Keras warns that
the monitored key is missing from the logs and goes on, these raise (a stop or a save that silently
never happens is worse).
"""

from __future__ import annotations

import csv
import math
import os
import sys

from array_api_compat import array_namespace

from . import saving
from ._inplace import copy_


class Callback:
    """Base class: every hook does nothing. ``model``, ``optimizer`` and ``params`` are set by ``fit``."""

    model = None
    optimizer = None
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

    def __init__(self, callbacks, model, params: dict, optimizer=None):
        self.callbacks = [cb if isinstance(cb, Callback) else LambdaCallback(cb) for cb in callbacks]
        for cb in self.callbacks:
            cb.model, cb.params, cb.optimizer = model, params, optimizer

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

    Keys: ``loss``, ``accuracy`` (classification only, or the names of fit's ``metrics``), the same with
    ``val_`` in front (with ``validation_data`` or ``validation_split``), ``seconds``, ``samples_per_s``
    and ``lr`` (the optimizer's learning rate at the epoch's last step). ``fit`` returns it.
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

    def plot(self, path=None, metrics=("loss", "accuracy")):
        """Draw each metric per epoch, training and validation (``val_``) curves side by side.

        One panel per metric of ``metrics`` that the history holds (a regression has no accuracy).
        Writes a PNG to ``path`` when given; returns the ``matplotlib.figure.Figure`` either way. Made
        without pyplot, so it needs no display and leaves pyplot's global state alone. Needs the
        ``plot`` extra: ``pip install 'xpnet[plot]'``.
        """
        Figure = _figure_class("History.plot")
        if isinstance(metrics, str):
            metrics = (metrics,)
        shown = [m for m in metrics if m in self.history or f"val_{m}" in self.history]
        if not shown:
            raise ValueError(f"History.plot: none of {list(metrics)} is in this history; it holds "
                             f"{sorted(self.history)}")
        fig = Figure(figsize=(5.0 * len(shown), 4.0), layout="constrained")
        for ax, name in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown):
            for key, label, style in ((name, "train", "o-"), (f"val_{name}", "validation", "s--")):
                if key in self.history:
                    values = self.history[key]
                    ax.plot(range(1, len(values) + 1), values, style, label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.set_title(name)
            ax.grid(True, alpha=0.3)
            if len(ax.get_lines()) > 1:
                ax.legend()
            ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)  # epochs are whole numbers
            ax.set_xlim(0.5, max(len(v) for k, v in self.history.items() if k.endswith(name)) + 0.5)
        if path is not None:
            fig.savefig(os.fspath(path), dpi=100)
        return fig


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the model was reset to its last finite weights."""

    def __init__(self, epoch: int, step: int, value: float, restored_step: int):
        self.epoch, self.step, self.value, self.restored_step = epoch, step, value, restored_step
        super().__init__(
            f"training diverged: the loss was {value} at epoch {epoch + 1}, step {step + 1}. The model keeps "
            f"its last finite weights (from before step {restored_step + 1} of that epoch). Try a lower "
            f"learning rate (e.g. a tenth), a smaller init, or check the data for NaN/inf.")


def _state(model) -> tuple:
    """What a rollback or a best-weights restore puts back: the parameters and the buffers (BatchNorm's
    running statistics, which a NaN batch poisons as surely as the weights)."""
    return model.parameters(), model.buffers()


def state_finite(state):
    """``all(isfinite(a))`` over every array of ``state``, as one 0-D boolean on the device (``None`` if empty).

    Nothing is read back: ``fit`` adds it to the window's one transfer, so the check costs no sync of its own.
    """
    arrays = [a for part in state for a in part.values()]
    if not arrays:
        return None
    xp = array_namespace(*arrays)
    return xp.all(xp.stack([xp.all(xp.isfinite(a)) for a in arrays]))


def _snapshot(state, into=None, finite: bool | None = None) -> dict | None:
    """Copies of ``state``'s arrays (keyed ``(i, name)``) if they are all finite, else ``None``.

    ``finite`` is that answer when the caller already has it (from the window's read-back); without it
    the arrays are checked here, in one read-back for all of them. ``into`` (an earlier snapshot) is
    overwritten in place where its arrays are writeable, so there is never a second copy of the weights
    alive, nor an allocation per window.
    """
    if finite is None:
        flag = state_finite(state)
        finite = flag is None or bool(flag)
    if not finite:
        return None
    old = into or {}
    return {(i, k): copy_(old.get((i, k)), p) for i, arrays in enumerate(state) for k, p in arrays.items()}


def _put_back(state, snapshot: dict, copy: bool = False) -> None:
    for (i, k), v in snapshot.items():
        state[i][k] = copy_(state[i][k], v) if copy else v


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
        self.good = _snapshot(_state(self.model), self.good)
        self.epoch, self.window_start = epoch, 0

    def on_batch_end(self, step, logs=None):
        values = logs["losses"].tolist()
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            _put_back(_state(self.model), self.good or {})
            raise TrainingDiverged(self.epoch, self.window_start + bad, float(values[bad]), self.window_start)
        self.window_start = step + 1
        if step < self.params["steps"] - 1:
            # fit's read-back brought the weights' finiteness with the losses: no second sync here.
            finite = logs.get("state_finite")
            self.good = _snapshot(_state(self.model), self.good, finite) or self.good


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
            print(format_epoch(epoch, self.params["epochs"], logs, self.model.device,
                               self.params.get("held_out", "test")), flush=True)


def _figure_class(who: str):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"{who} needs matplotlib, which is not installed: pip install 'xpnet[plot]' "
                          f"(or pip install matplotlib)") from exc
    return Figure


def require_matplotlib(who: str) -> None:
    """Raise the ``ImportError`` that :meth:`History.plot` would, now (before an hour of training)."""
    _figure_class(who)


def format_epoch(epoch: int, epochs: int, logs: dict, dev, held_out: str = "test") -> str:
    """One line per epoch: loss, accuracies, throughput and device.

    ``held_out`` names the ``val_`` figures: ``"test"`` for ``validation_data`` (the test set, in the
    CLI and the examples), ``"val"`` for rows held out of the training set by ``validation_split``.
    """
    parts = [f"epoch {epoch + 1}/{epochs}", f"loss {logs['loss']:.4f}"]
    if "accuracy" in logs:
        parts.append(f"train acc {logs['accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"{held_out} loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"{held_out} acc {logs['val_accuracy']:.4f}")
    for key in logs:  # fit's other metrics (top-k), after the ones the CLI's readers parse
        if key.startswith(("top_", "val_top_")):
            parts.append(f"{key.replace('val_', held_out + ' ').replace('_', ' ')} {logs[key]:.4f}")
    parts += [f"{logs['samples_per_s']:,.0f} samples/s", f"{logs['seconds']:.2f} s", f"{dev}"]
    return "  ".join(parts)


# -- Keras' callbacks ---------------------------------------------------------------------------
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
