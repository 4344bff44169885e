"""The training loop: data on the device once, batches gathered there, the loss read back only to report.

One step is ``forward -> loss -> backward -> optimizer.step``, with no host-device transfer and no
synchronization. Every ``check_every`` steps (and at the end of each epoch) the per-step losses are
stacked on the device and read back in one transfer: that is where the epoch loss, the accuracy and
the divergence check come from. Everything around the loop (the divergence rollback, the progress bar,
the epoch line, the history, the user's hooks) is a callback, in :mod:`xpnet.callbacks`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import traceback

from . import backend, checkpoint, distributed as distributed_mod, losses, metrics as metrics_mod, optim, schedules
from .callbacks import CallbackList, CSVLogger, DivergenceRollback, EarlyStopping, EpochLine, History
from .callbacks import LearningRateScheduler, LossWatch, ModelCheckpoint, ProgressBar
from .callbacks import state_finite
from .callbacks import TrainingDiverged, format_epoch  # noqa: F401  (their old home: still importable here)
from .layers import Sigmoid, Softmax, sigmoid, softmax
from .validation import check_batch_size, check_input_range, check_positive_int, data_range, output_width, prepare_xy
from .validation import warn


def on_model_device(fn):
    """Run ``fn(model, ...)`` under ``model.device.context()``: on CUDA every allocation and kernel of the
    model's work goes to the model's GPU, whatever device is current in the caller's thread."""
    @functools.wraps(fn)
    def run(model, *args, **kwargs):
        with model.device.context():
            return fn(model, *args, **kwargs)
    return run


def release(exc: BaseException) -> None:
    """Drop the arrays that the finished frames of ``exc``'s traceback (and its causes') still hold.

    After an out-of-memory error the failed step's temporaries are alive until the exception dies (its
    traceback keeps their frames); CuPy already gave back the pool's *unused* blocks before raising, so
    freeing the pool only helps once they are released. The traceback keeps its lines.
    """
    while exc is not None:
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


@contextlib.contextmanager
def _uploading(dev, where: str, *arrays):
    """Turn an out-of-memory error while moving ``arrays`` to ``dev`` into one that says so."""
    try:
        yield
    except Exception as exc:
        if not backend.is_out_of_memory(exc):
            raise
        sizes = ", ".join(f"{tuple(a.shape)} {getattr(a.dtype, 'name', a.dtype)}" for a in arrays
                          if hasattr(a, "shape"))
        raise backend.DeviceOutOfMemoryError(
            f"{where}: out of memory on {dev} while moving the data there ({sizes}; it goes to the device "
            f"whole, once): {exc}. Fix: pass fewer rows at a time, or use --device cpu / a GPU with more "
            f"free memory (a smaller batch size would not help).") from exc


def _shrinking_batches(dev, n: int, batch_size: int, where: str, run) -> None:
    """``run(lo, hi)`` over rows ``0..n`` in batches. On an out-of-memory error the batch is halved and the
    rows from the failed batch on are run again (the results before it are kept), down to one row."""
    lo = 0
    while lo < n:
        hi = min(n, lo + batch_size)
        try:
            run(lo, hi)
        except Exception as exc:
            if not backend.is_out_of_memory(exc):
                raise
            if hi - lo == 1:
                raise backend.DeviceOutOfMemoryError(
                    f"{where}: out of memory on {dev} even for one row: {exc}. Fix: a smaller network, "
                    f"or --device cpu.") from exc
            release(exc)
            backend.free_memory_pool(dev)
            batch_size = (hi - lo) // 2
            warn(f"{where}: out of memory on {dev} with batch_size={hi - lo}; going on with batch_size="
                 f"{batch_size}")
            continue
        lo = hi


def _threshold(loss) -> float:
    # One output unit: logits cross 0 where probabilities cross 0.5.
    return 0.0 if isinstance(loss, losses.BinaryCrossEntropy) else 0.5


def _batches(n: int, batch_size: int):
    for lo in range(0, n, batch_size):
        yield lo, min(n, lo + batch_size)


def _take(xp, a, order, lo, hi):
    if order is None:
        return a[lo:hi, ...]
    return xp.take(a, order[lo:hi], axis=0)


def _read_back(xp, batch_losses, hit_counts):
    """Per-batch losses and per-metric hit counts (0-D device arrays) in one transfer, as host float64."""
    values = xp.stack(batch_losses)
    if hit_counts:
        values = xp.concat([values, xp.astype(xp.stack(hit_counts), values.dtype)])
    values = backend.to_numpy(values).astype("float64")
    return values[:len(batch_losses)], values[len(batch_losses):].tolist()


class _EpochTotals:
    """The epoch's loss and metric hits, kept on the device per step and read back once per window."""

    def __init__(self, xp, metrics: list, threshold: float):
        self.xp, self.metrics, self.threshold = xp, metrics, threshold
        self.loss, self.samples = 0.0, 0
        self.correct = [0.0] * len(metrics)
        self.losses, self.counts = [], []
        self.hits = [[] for _ in metrics]

    def add(self, batch_loss, out, target) -> None:
        self.losses.append(batch_loss)
        self.counts.append(out.shape[0])
        self.dtype = out.dtype
        for hits, metric in zip(self.hits, self.metrics):
            hits.append(metric.hits(out, target, self.threshold))  # summed once per window

    def add_empty(self, zero) -> None:
        """A step in which this rank had no rows (distributed: its shard of a short last batch)."""
        self.losses.append(zero)
        self.counts.append(0)
        self.dtype = zero.dtype

    def read_back(self, finite=None, par=None) -> dict:
        """The window's per-step losses, hit counts and ``finite`` (the weights' 0-D finiteness flag, or
        ``None``) in one transfer; the running totals (over every rank's rows with ``par``)."""
        xp = self.xp
        sums = [xp.sum(xp.astype(xp.concat(h), self.dtype)) if h else xp.zeros_like(self.losses[0])
                for h in self.hits]
        values, correct = _read_back(xp, self.losses, sums + ([] if finite is None else [xp.astype(finite, self.dtype)]))
        if par is not None:
            values, self.counts, correct = par.reduce_window(values, self.counts, correct, finite is not None)
        extra = {} if finite is None else {"state_finite": bool(correct.pop())}
        self.loss += float(values @ backend.to_numpy(self.counts).astype("float64"))
        self.correct = [a + b for a, b in zip(self.correct, correct)]
        self.samples += sum(self.counts)
        self.losses, self.counts = [], []
        self.hits = [[] for _ in self.metrics]
        return {"losses": values, "samples": self.samples, **self.logs(self.samples), **extra}

    def logs(self, n: int) -> dict:
        return {"loss": self.loss / n, **{m.name: c / n for m, c in zip(self.metrics, self.correct)}}


@on_model_device
@distributed_mod.entry
def fit(model, X, y, *, loss, optimizer, epochs, batch_size, shuffle=True, validation_data=None,
        validation_split=0.0, metrics=None, schedule=None, verbose="auto", callbacks=(), lr=None,
        check_every: int = 50, checkpoint_dir=None, resume_from=None, distributed=None):
    """Train ``model`` on ``(X, y)``; returns the :class:`~xpnet.callbacks.History` (see ``Sequential.fit``).

    Each step is ``forward -> loss -> backward -> optimizer.step`` with nothing read back; every
    ``check_every`` steps and at each epoch's end the window's losses (and metric counts) come back in
    one transfer and go to the callbacks' ``on_batch_end`` (the divergence rollback first, then the
    progress bar, then the user's). A ``schedule`` sets ``optimizer.lr`` (a host float) before each
    epoch or each step, from the epoch or the global step ``epoch * steps_per_epoch + step``.

    ``distributed`` arrives here as a :class:`xpnet.distributed.DataParallel` (or ``None``): its hooks
    shard each batch, all-reduce the gradients and the window's figures, and keep output to rank 0.

    With ``resume_from``, the checkpoint is read and checked against the model, then every argument is
    checked (the data too), and only then is it loaded: a refused argument leaves the model as it was.
    The callbacks get their states back after ``on_train_begin`` (:func:`xpnet.checkpoint.restore_callbacks`).
    """
    par = distributed
    callbacks = list(callbacks)  # iterated more than once (a generator would be spent by the first)
    # -- checkpoints: the one to resume from, read and checked against the model (which it does not
    # change yet: bad data below must leave the model as it was), and where to write ----------------
    pending = None if resume_from is None else checkpoint.prepare_resume(model, resume_from, loss, optimizer, lr)
    if pending is None:
        if loss is None:
            raise ValueError(_no_loss_message(model))
        loss = losses.get(loss)
        optimizer = optim.get("sgd" if optimizer is None else optimizer, lr)
    else:
        loss = pending.loss
    writes = par is None or par.is_root
    last = None if checkpoint_dir is None or not writes else checkpoint.checkpoint_path(checkpoint_dir)
    with _uploading(model.device, "fit", X, y):
        X, y, classify, val, span = _prepare(model, X, y, loss, epochs, batch_size, check_every, validation_data,
                                             validation_split)
    found = metrics_mod.get_all(metrics, classify, "fit")
    _check_schedule(schedule, callbacks)
    _check_monitors(callbacks, val is not None)
    # -- every argument checked: resume (model, optimizer, RNG, history, epoch) -----------------------
    resumed = None if pending is None else pending.restore()
    if resumed is not None:
        optimizer = resumed.optimizer
    first_epoch, global_step = (0, 0) if resumed is None else (resumed.epoch, resumed.step)
    old = model.input_range  # the checkpoint's, when resuming
    model.input_range = span if old is None else (min(old[0], span[0]), max(old[1], span[1]))
    model.loss = loss
    # ----------------------------------------------------------------------------------------------
    dev, xp, n = model.device, model.device.xp, X.shape[0]
    params, grads = model.parameters(), model.gradients()
    steps = list(_batches(n, batch_size))
    # what the run is asked for and trains on: kept in its checkpoints, compared with the one resumed
    run = None if last is None and resumed is None else checkpoint.run_entry(dev, X, y, epochs, batch_size,
                                                                             len(steps))
    if resumed is not None:  # the checkpoint's schedule, bound to the first run's base lr (stretched to a new length)
        checkpoint.compare_runs(resumed, run, resume_from, say=writes)
        schedule = checkpoint.resumed_schedule(resumed, schedule, run, say=writes)
    schedule = _bind_schedule(schedule, optimizer, epochs, len(steps), callbacks)
    per_step = schedule is not None and schedule.per == "step"
    verbose = 1 if verbose == "auto" else verbose  # Keras' rule: epoch lines everywhere, the bar on a terminal
    given = callbacks  # as the user gave them: their checkpoint keys count every one, on every rank
    if par is not None:
        verbose, callbacks = par.local(verbose, given)
    history, progress = History(), ProgressBar()
    if resumed is not None:  # the returned history holds every epoch, those before the checkpoint too
        history.history = resumed.history
        checkpoint.say_if_done(resumed, epochs, resume_from, verbose, say=writes)
    line = [] if any(isinstance(cb, EpochLine) for cb in callbacks) else [EpochLine()]  # the caller's wins
    watchers = [DivergenceRollback(), LossWatch(say=writes)]
    cbs = CallbackList([*watchers, progress, history, *line, *callbacks], model, {
        "epochs": epochs, "steps": len(steps), "samples": n, "check_every": check_every, "verbose": verbose},
        optimizer)
    model.stop_training = False
    if par is not None:
        par.start(model, optimizer, n, first_epoch)
        nothing = dev.asarray(0.0, model.dtype)
    cbs.on_train_begin()
    if resumed is not None:  # after on_train_begin, which sets up a fresh run: the checkpoint's state wins
        checkpoint.restore_callbacks(resumed, given, os.fspath(resume_from), active=callbacks, say=writes)
    epoch = step = 0
    try:
        for epoch in range(first_epoch, epochs):
            start = time.perf_counter()
            order = dev.asarray(model.rng.permutation(n), "int64") if shuffle else None
            if schedule is not None and not per_step:
                optimizer.lr = schedule(epoch)
            cbs.on_epoch_begin(epoch)
            totals = _EpochTotals(xp, found, _threshold(loss))
            for step, (lo, hi) in enumerate(steps):
                if per_step:
                    optimizer.lr = schedule(epoch * len(steps) + step)
                if par is not None:
                    lo, hi = par.shard(lo, hi)
                if hi > lo:  # (distributed, a rank's shard of a short last batch may be empty)
                    xb, yb = _take(xp, X, order, lo, hi), _take(xp, y, order, lo, hi)
                    out = model.forward(xb, training=True)
                    totals.add(loss.forward(out, yb), out, yb)
                    model.backward(loss.backward())
                else:
                    totals.add_empty(nothing)
                if par is not None:
                    par.average_gradients(grads, hi - lo)
                optimizer.step(params, grads)
                if len(totals.losses) == check_every or step == len(steps) - 1:
                    cbs.on_batch_end(step, totals.read_back(state_finite((params, model.buffers())), par))
            backend.synchronize(dev)
            seconds = time.perf_counter() - start
            logs = totals.logs(n)
            if par is not None:
                par.end_epoch(model)
            if val is not None:
                result = evaluate(model, *val[:2], loss, max(batch_size, 1024), metrics=found, prepared=True,
                                  classify=val[2])
                logs.update({f"val_{k}": v for k, v in result.items()})
            logs.update(seconds=seconds, samples_per_s=n / seconds if seconds > 0 else float("inf"),
                        lr=float(optimizer.lr))
            if par is not None:
                logs = par.agree(logs)
            cbs.on_epoch_end(epoch, logs)
            global_step += len(steps)
            if last is not None:  # after the callbacks, so that a run one of them stops is saved too
                checkpoint.save_checkpoint(last, model, optimizer, epoch=epoch + 1, step=global_step,
                                           schedule=schedule, history=history.history, callbacks=given, run=run)
            if par is not None:
                model.stop_training = par.stop(model.stop_training)
            if model.stop_training:
                break
    except Exception as exc:
        if not backend.is_out_of_memory(exc):
            raise
        raise backend.DeviceOutOfMemoryError(
            f"fit: out of memory on {dev} while training with batch_size={batch_size} (epoch {epoch + 1}, step "
            f"{step + 1}): {exc}. Fix: a smaller batch size (--batch-size) or a smaller network.") from exc
    finally:
        progress.close()  # a diverged or interrupted epoch leaves no bar behind
    cbs.on_train_end({k: v[-1] for k, v in history.history.items()})
    return history


def _check_schedule(schedule, callbacks) -> None:
    """Refuse a schedule that fit could not use, before anything is loaded or trained."""
    if schedule is None:
        return
    if any(isinstance(cb, LearningRateScheduler) for cb in callbacks):
        raise ValueError("fit: schedule= and a LearningRateScheduler callback would both set the learning rate; "
                         "use one of them")
    schedules.get(schedule)


def _bind_schedule(schedule, optimizer, epochs: int, steps_per_epoch: int, callbacks):
    """fit's schedule with its base lr (the optimizer's, unless given) and its total length filled in."""
    if schedule is None:
        return None
    _check_schedule(schedule, callbacks)
    schedule = schedules.get(schedule)
    total = epochs * steps_per_epoch if schedule.per == "step" else epochs
    return schedule.bind(lr=optimizer.lr, total=max(total, 1))


def _split(X, y, validation_split):
    """Keras' ``validation_split``: the last ``ceil``-rounded fraction of the rows, before any shuffling."""
    ok = isinstance(validation_split, (int, float)) and not isinstance(validation_split, bool)
    if not (ok and 0.0 < validation_split < 1.0):
        raise ValueError(f"fit: validation_split must be a number in (0, 1), the fraction of rows held out, got "
                         f"{validation_split!r}")
    n = X.shape[0]
    split_at = int(math.ceil(n * (1.0 - validation_split)))
    if split_at in (0, n):
        raise ValueError(f"fit: validation_split={validation_split} of {n} rows leaves "
                         f"{'no training' if split_at == 0 else 'no validation'} rows; use a fraction that "
                         f"leaves at least one row on each side, or pass validation_data")
    return X[:split_at, ...], y[:split_at, ...], X[split_at:, ...], y[split_at:, ...]


def _prepare(model, X, y, loss, epochs, batch_size, check_every, validation_data, validation_split=0.0):
    """Check fit's arguments and move the data to the model's device, changing nothing in the model.

    Returns ``(X, y, classify, val, span)``: ``val`` the held-out ``(X, y, classify)`` or ``None``, ``span``
    the training rows' ``(min, max)``, which fit adds to the model's input range.
    """
    check_positive_int("epochs", epochs, allow_zero=True)
    check_batch_size(batch_size)
    check_positive_int("check_every", check_every)
    if validation_split and validation_data is not None:
        raise ValueError("fit: validation_data and validation_split were both given; pass one of them")
    _check_output_layer(model, loss)
    X, y, classify, span = prepare_xy(model, X, y, loss, "fit", warn_unscaled=True, with_range=True)
    val = None
    if validation_split:
        X, y, X_val, y_val = _split(X, y, validation_split)
        val = (X_val, y_val, classify)
        span = data_range(X)  # the training rows' own
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("fit: validation_data must be a pair (X_val, y_val)")
        val = prepare_xy(model, validation_data[0], validation_data[1], loss, "validation_data")
    return X, y, classify, val, span


def _ends_in(model, kinds) -> bool:
    return any(isinstance(layer, kinds) for layer in model.layers[-1:])


def _check_output_layer(model, loss) -> None:
    if isinstance(loss, losses.CrossEntropy):
        _check_probabilities(model)
    elif isinstance(loss, losses.SoftmaxCrossEntropy) and _ends_in(model, Softmax):
        warn("fit: the model ends in Softmax() and SoftmaxCrossEntropy applies softmax itself (it takes "
             "logits), so softmax is applied twice and training crawls. Remove the final Softmax() "
             "(predict_proba gives probabilities), or use loss='cross_entropy', which takes probabilities.")
    elif isinstance(loss, losses.BinaryCrossEntropy) and _ends_in(model, Sigmoid):
        warn("fit: the model ends in Sigmoid() and BinaryCrossEntropy applies the sigmoid itself (it takes "
             "logits), so the sigmoid is applied twice. Remove the final Sigmoid() (predict_proba gives "
             "probabilities).")


def _check_probabilities(model) -> None:
    """CrossEntropy takes probabilities: refuse an xpnet layer at the end that does not give them (on logits
    the loss goes negative and accuracy stays at chance). A user's own last layer is left to LossWatch,
    which stops fit at the first negative window loss."""
    last = model.layers[-1] if model.layers else None
    if isinstance(last, Softmax) or not type(last).__module__.startswith("xpnet."):
        return
    if isinstance(last, Sigmoid):
        raise ValueError(
            "fit: loss='cross_entropy' after Sigmoid() pulls only the true class's output up (-t log p has no "
            "term for the others), so every output drifts to 1 and accuracy falls to chance. For one output "
            "(0/1 labels) remove the final Sigmoid() and use loss='binary_cross_entropy', which takes logits; "
            "for one class per row end the model in Softmax() instead.")
    raise ValueError(
        f"fit: loss='cross_entropy' takes probabilities, but the model ends in {last!r}, whose outputs are not "
        f"probabilities (the loss would go negative and accuracy stay at chance). End the model in Softmax(), "
        f"or use loss='softmax_cross_entropy', which takes these outputs as logits and applies softmax itself.")


def _no_loss_message(model) -> str:
    """fit without a loss: the choices, and the one that fits the model's last layer first."""
    last, width = (model.layers[-1] if model.layers else None), output_width(model)
    if isinstance(last, Softmax):
        fits = "loss='cross_entropy' (the model ends in Softmax(), which gives probabilities)"
    elif isinstance(last, Sigmoid):
        fits = ("loss='mse' (the model ends in Sigmoid(), as the tutorial's), or remove the Sigmoid() and use "
                "loss='binary_cross_entropy' for 0/1 labels")
    elif width == 1:
        fits = ("loss='binary_cross_entropy' for 0/1 labels (it takes the output as a logit), or loss='mse' for "
                "regression")
    else:
        fits = ("loss='softmax_cross_entropy' for class labels (it takes the outputs as logits), or loss='mse' for "
                "regression")
    return (f"fit: no loss given; pass {fits}. The choices: "
            f"{', '.join(losses.LOSSES)}, or a Loss instance.")


def _check_monitors(callbacks, validating: bool) -> None:
    """Refuse, before anything trains, a callback that would watch a val_ figure fit never computes.

    Only while every callback before it is one of xpnet's Keras callbacks: a user's own (or a plain
    function) may put val_ figures of its own into the logs, as tests and custom evaluations do.
    """
    if validating:
        return
    for cb in callbacks:
        watches = isinstance(cb, EarlyStopping) or (isinstance(cb, ModelCheckpoint) and cb.save_best_only)
        if watches and cb.monitor.startswith("val_"):
            raise ValueError(
                f"fit: {type(cb).__name__} monitors {cb.monitor!r}, a figure on held-out data, but fit was given "
                f"neither validation_data nor validation_split. Pass validation_data=(X_val, y_val) or "
                f"validation_split=0.2, or watch the training loss: {type(cb).__name__}(monitor='loss', ...).")
        if not isinstance(cb, (CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint)):
            return


@on_model_device
def predict(model, X, batch_size: int = 1024, where: str = "predict"):
    check_batch_size(batch_size)
    with _uploading(model.device, where, X):
        X, _, _, span = prepare_xy(model, X, None, None, where, targets=False, with_range=True)
    if model.input_range is not None:
        check_input_range(model, span, where)
    xp = model.device.xp
    outs = []
    _shrinking_batches(model.device, X.shape[0], batch_size, where,
                       lambda lo, hi: outs.append(model.forward(X[lo:hi, ...])))
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


@on_model_device
def predict_proba(model, X, batch_size: int = 1024):
    out = predict(model, X, batch_size, "predict_proba")
    if _ends_in(model, (Softmax, Sigmoid)):
        return out
    if isinstance(model.loss, losses.SoftmaxCrossEntropy):
        return softmax(out)
    if isinstance(model.loss, losses.BinaryCrossEntropy):
        return sigmoid(out)
    raise ValueError(f"predict_proba: the outputs of this model are not probabilities and its loss "
                     f"({model.loss!r}) does not say how to make them: the model should end in Softmax() or "
                     f"Sigmoid(), or be trained with SoftmaxCrossEntropy or BinaryCrossEntropy on logits. "
                     f"Use predict() for the raw outputs.")


@on_model_device
def predict_classes(model, X, batch_size: int = 1024):
    out = predict(model, X, batch_size, "predict_classes")
    xp = model.device.xp
    if out.shape[1] > 1:
        return xp.argmax(out, axis=1)
    # one output: a probability (after a Sigmoid layer) crosses 0.5 where a logit crosses 0
    threshold = 0.5 if _ends_in(model, Sigmoid) else _threshold(model.loss)
    return xp.astype(out[:, 0] > threshold, xp.int64)


@on_model_device
def evaluate(model, X, y, loss, batch_size: int = 1024, *, metrics=None, prepared: bool = False,
             classify=None) -> dict:
    """``{"loss": ..., <metric name>: ...}`` over ``(X, y)``; metrics default to accuracy for class targets.

    Every batch's loss and hit counts stay on the device; they come back together in one transfer."""
    check_batch_size(batch_size)
    if not prepared:
        with _uploading(model.device, "evaluate", X, y):
            X, y, classify, span = prepare_xy(model, X, y, loss, "evaluate", with_range=True)
        if model.input_range is not None:
            check_input_range(model, span, "evaluate")
    found = metrics_mod.get_all(metrics, classify, "evaluate")
    xp = model.device.xp
    threshold = _threshold(loss)
    batch_losses, counts = [], []
    hits = [None] * len(found)

    def run(lo, hi):  # kept only once the whole batch has gone through (a halved batch runs it again)
        out = model.forward(X[lo:hi, ...])
        yb = y[lo:hi, ...]
        batch_loss = loss.forward(out, yb)
        found_hits = [xp.sum(xp.astype(metric.hits(out, yb, threshold), out.dtype)) for metric in found]
        batch_losses.append(batch_loss)
        counts.append(hi - lo)
        for i, count in enumerate(found_hits):
            hits[i] = count if hits[i] is None else hits[i] + count

    _shrinking_batches(model.device, X.shape[0], batch_size, "evaluate", run)
    n = X.shape[0]
    values, correct = _read_back(xp, batch_losses, hits)
    result = {"loss": float(values @ backend.to_numpy(counts).astype("float64")) / n}
    result.update({m.name: c / n for m, c in zip(found, correct)})
    return result
