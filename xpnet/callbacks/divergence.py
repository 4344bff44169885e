"""Training that goes wrong: :class:`DivergenceRollback` puts back the last finite weights and raises
:class:`TrainingDiverged` when the loss becomes NaN or infinite; :class:`LossWatch` warns of a loss diverging
though finite. Both run in every ``fit``. The snapshot helpers here copy a model's parameters and buffers
(``EarlyStopping`` keeps its best weights with them too)."""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from ..inplace import copy_
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


def model_state(model) -> tuple:
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


def snapshot(state, into=None, finite: bool | None = None) -> dict | None:
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


def put_back(state, saved: dict, copy: bool = False) -> None:
    """Puts ``saved`` (a :func:`snapshot` of ``state``) back into ``state``: its arrays themselves, or copies
    into ``state``'s own arrays with ``copy`` (so that ``saved`` can be put back again)."""
    for (i, k), v in saved.items():
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
        self.good = snapshot(model_state(self.model), self.good)
        self.epoch, self.window_start = epoch, 0

    def on_batch_end(self, step, logs=None):
        values = logs["losses"].tolist()
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            put_back(model_state(self.model), self.good or {})
            raise TrainingDiverged(self.epoch, self.window_start + bad, float(values[bad]), self.window_start)
        self.window_start = step + 1
        if step < self.params["steps"] - 1:
            # fit's read-back brought the weights' finiteness with the losses: no second sync here.
            finite = logs.get("state_finite")
            self.good = snapshot(model_state(self.model), self.good, finite) or self.good


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
