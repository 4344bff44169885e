"""The training loop, and evaluation and prediction: data on the device once, batches gathered there, the
loss read back only to report.

One step is ``forward -> loss -> backward -> optimizer.step``, with no host-device transfer and no
synchronization. Every ``check_every`` steps (and at the end of each epoch) the per-step losses are
stacked on the device and read back in one transfer: that is where the epoch loss, the accuracy and
the divergence check come from. The loop's collaborators: :class:`~xpnet.train.prepare.Training` (the
arguments checked, a checkpoint resumed), the strategy (:mod:`xpnet.train.strategy`: one process or data
parallel), and the callbacks (:mod:`xpnet.callbacks`; the per-epoch checkpoint is one,
:class:`~xpnet.train.backup.Backup`), as Chainer's ``Trainer.run`` calls its updater and extensions.
"""

from __future__ import annotations

import functools
import time

from .. import backend, losses, metrics as metrics_mod
from ..callbacks import state_finite
from ..layers import Sigmoid, Softmax, sigmoid, softmax
from ..arguments import check_count
from ..validation import check_input_range, prepare_xy
from .inbackward import release_sgd, take_sgd
from .strategy import SingleProcess, run as run_strategy
from .checks import ends_in
from .data import EpochTotals, decision_threshold, read_back, shrinking_batches, uploading
from .prepare import Training
from .sources import TextWindows, held_out


def on_model_device(fn):
    """Run ``fn(model, ...)`` under ``model.device.context()``: on CUDA every allocation and kernel of the
    model's work goes to the model's GPU, whatever device is current in the caller's thread."""
    @functools.wraps(fn)
    def run(model, *args, **kwargs):
        with model.device.context():
            return fn(model, *args, **kwargs)
    return run


@on_model_device
def fit(model, X, y, *, loss, optimizer, epochs, batch_size, shuffle=True, validation_data=None,
        validation_split=0.0, metrics=None, schedule=None, verbose="auto", callbacks=(), lr=None,
        check_every: int = 50, checkpoint_dir=None, resume_from=None, distributed=None, steps_per_epoch=None,
        validation_steps=None, evaluate_train=False):
    """Train ``model`` on ``(X, y)``; returns the :class:`~xpnet.callbacks.History` (see ``Sequential.fit``).

    Each step is ``forward -> loss -> backward -> optimizer.step`` with nothing read back; every
    ``check_every`` steps and at each epoch's end the window's losses (and metric counts) come back in
    one transfer and go to the callbacks' ``on_batch_end`` (the divergence rollback first, then the
    progress bar, then the user's). A ``schedule`` sets ``optimizer.lr`` (a host float) before each
    epoch or each step, from the epoch or the global step ``epoch * steps_per_epoch + step``.

    ``distributed`` picks the strategy (:func:`xpnet.train.strategy.run`): data parallel
    (:class:`xpnet.distributed.DataParallel`) shards each batch, all-reduces the gradients and the
    window's figures, and keeps output to rank 0; one process leaves all that out.

    With ``resume_from``, the checkpoint is read and checked against the model, then every argument is
    checked (the data too), and only then is it loaded: a refused argument leaves the model as it was.
    The callbacks get their states back after ``on_train_begin`` (:class:`xpnet.train.resume.Resume`).

    ``X`` may be a :class:`~xpnet.train.sources.TextWindows` source (``y=None``): an epoch is then
    ``steps_per_epoch`` steps of ``batch_size`` random windows, and a source as ``validation_data`` is
    evaluated on ``validation_steps`` batches of fixed windows. ``evaluate_train`` also evaluates the
    training data after each epoch (a source's fixed windows, or all the rows), logged as ``train_loss``.
    """
    settings = dict(loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                    validation_data=validation_data, validation_split=validation_split, metrics=metrics,
                    schedule=schedule, verbose=verbose, callbacks=callbacks, lr=lr, check_every=check_every,
                    checkpoint_dir=checkpoint_dir, resume_from=resume_from, steps_per_epoch=steps_per_epoch,
                    validation_steps=validation_steps, evaluate_train=evaluate_train)
    return run_strategy(_train, model, (X, y), settings, distributed)


def _train(model, X, y, *, strategy, epochs, check_every, **settings):
    """fit on this rank: prepare; for each epoch, for each batch, a step; the callbacks at the edges."""
    run = Training(model, X, y, strategy, epochs=epochs, check_every=check_every, **settings)
    cbs, steps, xp = run.callbacks, run.steps, model.device.xp
    model.stop_training = False
    strategy.start(model, run.optimizer, run.rows, run.first_epoch)
    cbs.on_train_begin()
    run.restore_callbacks()
    # plain SGD steps the Dense layers inside backward, where it can; run.optimizer.step does the rest
    stepping, grads = take_sgd(model, run.optimizer, run.params, run.grads, isinstance(strategy, SingleProcess))
    epoch = step = 0
    try:
        for epoch in range(run.first_epoch, epochs):
            start = time.perf_counter()
            order = run.data.epoch(model.rng)  # a permutation of the rows, or a source's window starts
            run.set_lr(epoch)
            cbs.on_epoch_begin(epoch)
            totals = EpochTotals(xp, run.metrics, decision_threshold(run.loss), strategy.reduce_window)
            for step, (lo, hi) in enumerate(steps):
                run.set_lr(epoch, step)
                lo, hi = strategy.shard(lo, hi)
                _step(model, run, totals, order, step, lo, hi)
                strategy.average_gradients(grads, hi - lo)
                if grads:  # (none left where SGD stepped every layer inside backward)
                    run.optimizer.step(run.params, grads)
                if len(totals.losses) == check_every or step == len(steps) - 1:
                    cbs.on_batch_end(step, totals.read_back(state_finite((run.params, model.buffers()))))
            cbs.on_epoch_end(epoch, _epoch_logs(model, run, strategy, totals, start))
            model.stop_training = strategy.stop(model.stop_training)
            if model.stop_training:
                break
    except Exception as exc:
        if not backend.is_out_of_memory(exc):
            raise
        raise backend.DeviceOutOfMemoryError(
            f"fit: out of memory on {model.device} while training with batch_size={run.batch_size} (epoch "
            f"{epoch + 1}, step {step + 1}): {exc}. Fix: a smaller batch size (--batch-size) or a smaller "
            f"network.") from exc
    finally:
        release_sgd(stepping)
        run.progress.close()  # a diverged or interrupted epoch leaves no bar behind
    cbs.on_train_end({k: v[-1] for k, v in run.history.history.items()})
    return run.history


def _step(model, run: Training, totals: EpochTotals, order, step: int, lo: int, hi: int) -> None:
    """forward, loss, backward on rows ``lo..hi`` of this epoch's order (step ``step``); nothing read back."""
    if hi > lo:  # (distributed, a rank's shard of a short last batch may be empty)
        xb, yb = run.data.batch(order, step, lo, hi)
        out = model.forward(xb, training=True)
        totals.add(run.loss.forward(out, yb), out, yb)
        model.backward(run.loss.backward())
    else:
        totals.add_empty(run.nothing)


def _epoch_logs(model, run: Training, strategy, totals: EpochTotals, start: float) -> dict:
    """The epoch's figures: the training totals, the held-out ones, the time and the learning rate (every
    rank's the same)."""
    backend.synchronize(model.device)
    seconds = time.perf_counter() - start
    logs = totals.logs(run.rows)
    strategy.end_epoch(model)
    for prefix, held in (("train_", run.train_eval), ("val_", run.val)):
        if held is not None:  # (X, y, classify, the batch size to evaluate in)
            result = evaluate(model, *held[:2], run.loss, held[3], metrics=run.metrics, prepared=True,
                              classify=held[2])
            logs.update({prefix + k: v for k, v in result.items()})
    logs.update(seconds=seconds, samples_per_s=run.rows / seconds if seconds > 0 else float("inf"),
                lr=float(run.optimizer.lr))
    return strategy.agree(logs)


@on_model_device
def predict(model, X, batch_size: int = 1024, where: str = "predict"):
    check_count("batch_size", batch_size)
    with uploading(model.device, where, X):
        X, _, _, span = prepare_xy(model, X, None, None, where, targets=False, with_range=True)
    if model.input_range is not None:
        check_input_range(model, span, where)
    xp = model.device.xp
    outs = []
    shrinking_batches(model.device, X.shape[0], batch_size, where,
                       lambda lo, hi: outs.append(model.forward(X[lo:hi, ...])))
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


@on_model_device
def predict_proba(model, X, batch_size: int = 1024):
    out = predict(model, X, batch_size, "predict_proba")
    if ends_in(model, (Softmax, Sigmoid)):
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
    threshold = 0.5 if ends_in(model, Sigmoid) else decision_threshold(model.loss)
    return xp.astype(out[:, 0] > threshold, xp.int64)


@on_model_device
def evaluate(model, X, y, loss, batch_size: int = 1024, *, metrics=None, prepared: bool = False,
             classify=None, steps=None) -> dict:
    """``{"loss": ..., <metric name>: ...}`` over ``(X, y)``; metrics default to accuracy for class targets.

    ``X`` may be a :class:`~xpnet.train.sources.TextWindows` source (``y=None``): it is evaluated on its fixed
    ``steps x batch_size`` windows (``steps`` default 20), with no metric unless asked.
    Every batch's loss and hit counts stay on the device; they come back together in one transfer."""
    check_count("batch_size", batch_size)
    if isinstance(X, TextWindows):
        if y is not None:
            raise ValueError("evaluate: a TextWindows source gives the targets itself; leave y out")
        X, y, classify, _ = held_out(model, X, steps, batch_size, "evaluate", "evaluate: steps")
        metrics, prepared = [] if metrics is None else metrics, True
    elif steps is not None:
        raise ValueError("evaluate: steps counts the batches of a TextWindows source's fixed windows; arrays are "
                         "evaluated whole: leave steps out")
    if not prepared:
        with uploading(model.device, "evaluate", X, y):
            X, y, classify, span = prepare_xy(model, X, y, loss, "evaluate", with_range=True)
        if model.input_range is not None:
            check_input_range(model, span, "evaluate")
    found = metrics_mod.get_all(metrics, classify, "evaluate")
    xp = model.device.xp
    threshold = decision_threshold(loss)
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

    shrinking_batches(model.device, X.shape[0], batch_size, "evaluate", run)
    n = X.shape[0]
    values, correct = read_back(xp, batch_losses, hits)
    result = {"loss": float(values @ backend.to_numpy(counts).astype("float64")) / n}
    result.update({m.name: c / n for m, c in zip(found, correct)})
    return result
