"""The callbacks ``fit`` always runs: the divergence rollback, the progress bar and the epoch line."""

from __future__ import annotations

import math
import sys
import time

from array_api_compat import array_namespace

from .._inplace import copy_
from ..losses import CrossEntropy
from ..validation import warn
from .base import Callback


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


class LossWatch(Callback):
    """What a finite loss still proves, read from each window's losses (no extra transfer).

    A negative ``CrossEntropy`` means its inputs are not probabilities (or its targets are negative):
    a ``ValueError`` at once. A loss that stays far above where it started (every step of a run at least
    as long as the first window, ``factor`` times the first window's mean or more) is diverging though
    finite, on its way to chance accuracy: one warning per fit, naming the learning rate. ``say=False``
    (a distributed fit's other ranks) keeps the warning to one process; every rank raises alike.
    """

    factor = 100.0

    def __init__(self, say: bool = True):
        self.say = say
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.start, self.need, self.run, self.warned, self.epoch = None, 0, 0, False, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, step, logs=None):
        values = logs["losses"]
        # -t log p >= 0 for p <= 1 and t >= 0; a softmax's rounding (p = 1 + ulp) stays above -1e-6
        if isinstance(self.model.loss, CrossEntropy) and values.min() < -1e-4:
            raise ValueError(
                f"fit: loss='cross_entropy' went negative ({values.min():.4g}, epoch {self.epoch + 1}, step "
                f"{step + 1}): the model's outputs are not probabilities in 0..1, or the targets are negative. "
                f"End the model in Softmax(), or use loss='softmax_cross_entropy', which takes logits.")
        if self.start is None:
            self.start, self.need = float(values.mean()), len(values)
            return
        high = values >= self.factor * self.start
        # the run of high steps that ends this window: a whole high window extends it, else it restarts at
        # the window's last low step (argmin finds it, counting from the end)
        self.run = self.run + len(values) if high.all() else int(high[::-1].argmin())
        if self.start > 0 and self.run >= self.need and not self.warned:
            self.warned = True
            if self.say:
                self._warn(step, float(values.max()))

    def _warn(self, step, top):
        opt = self.optimizer
        name, lr = type(opt).__name__, float(opt.lr)
        clip = ("" if getattr(opt, "clip_norm", None) is not None
                else f", or clip the gradients: {name}(..., clip_norm=1.0)")
        warn(f"fit: the loss is diverging though finite: the last {self.run} steps were all at least "
             f"{self.factor:g}x the first window's mean loss ({self.start:.4g}), up to {top:.4g} (epoch "
             f"{self.epoch + 1}, step {step + 1}); such a run does not recover and ends no better than a "
             f"guess. Lower the learning rate ({name} lr={lr:g} now: try lr={lr / 10:g}){clip}.")


class ProgressBar(Callback):
    """Progress through each epoch on stderr, once per read-back window, when ``verbose == 1``
    (``verbose=2`` is Keras' "one line per epoch": the epoch lines alone).

    On a terminal, a tqdm bar per epoch. Elsewhere (a log file, CI, a batch job) a plain line
    ``epoch 1/5  step 400/469  loss 0.3100  1,234 samples/s  ~0:45 left in the epoch`` at most every
    ``interval`` seconds, the first ``interval`` seconds into an epoch (one shorter than that shows only
    its epoch line). Both come from the losses the window already read back: no extra wait on the device.
    """

    interval = 30.0  # seconds between plain lines: a slow epoch shows it is alive, a fast one stays quiet

    def __init__(self):
        self.bar = None
        self.start = self.said = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.params["verbose"] != 1:
            return
        if not sys.stderr.isatty():
            self.start = self.said = time.monotonic()
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params["samples"], desc=f"epoch {epoch + 1}/{self.params['epochs']}",
                        unit="sample", leave=False, dynamic_ncols=True, file=sys.stderr)

    def on_batch_end(self, step, logs=None):
        if self.bar is not None:
            self.bar.update(logs["samples"] - self.bar.n)
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")
        elif self.said is not None and step < self.params["steps"] - 1:  # the epoch line reports the last
            now = time.monotonic()
            if now - self.said >= self.interval:
                self.said = now
                print(self._line(step, logs, now - self.start), file=sys.stderr, flush=True)

    def _line(self, step, logs, seconds: float) -> str:
        rate = logs["samples"] / seconds
        left = round((self.params["samples"] - logs["samples"]) / rate) if rate > 0 else 0
        return (f"epoch {self.epoch + 1}/{self.params['epochs']}  step {step + 1}/{self.params['steps']}  "
                f"loss {logs['loss']:.4f}  {rate:,.0f} samples/s  ~{_clock(left)} left in the epoch")

    def on_epoch_end(self, epoch, logs=None):
        self.close()

    def close(self):
        self.said = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class EpochLine(Callback):
    """Prints one line per epoch (loss, accuracies, throughput, device) when ``verbose >= 1``.

    ``held_out`` names the ``val_`` figures in the line: ``"val"`` (the default, as the history's keys),
    or e.g. ``"test"`` when ``validation_data`` is the test set. ``fit`` prints with its own
    ``EpochLine()`` unless ``callbacks`` holds one: ``callbacks=[EpochLine(held_out="test")]``.
    """

    def __init__(self, held_out: str = "val"):
        self.held_out = held_out

    def on_epoch_end(self, epoch, logs=None):
        if self.params["verbose"] >= 1:
            print(format_epoch(epoch, self.params["epochs"], logs, self.model.device, self.held_out), flush=True)


def format_epoch(epoch: int, epochs: int, logs: dict, dev, held_out: str = "val") -> str:
    """One line per epoch: loss, accuracies, throughput and device.

    ``held_out`` names the ``val_`` figures: ``"val"`` (``validation_data`` or ``validation_split``, as
    the history's keys), or ``"test"`` where the held-out set is the test set (the ``xpnet`` command).
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
