"""The training loop: data on the device once, batches gathered there, the loss read back only to report.

One step is ``forward -> loss -> backward -> optimizer.step``, with no host-device transfer and no
synchronization. Every ``check_every`` steps (and at the end of each epoch) the per-step losses are
stacked on the device and read back in one transfer: that is where the epoch loss, the accuracy and
the divergence check come from. Everything around the loop (the divergence rollback, the progress bar,
the epoch line, the history, the user's hooks) is a callback, in :mod:`xpnet.callbacks`.
"""

from __future__ import annotations

import os
import time

from array_api_compat import array_namespace

from . import backend, checkpoint, losses, optim
from .callbacks import CallbackList, DivergenceRollback, EpochLine, History, ProgressBar
from .callbacks import TrainingDiverged, format_epoch  # noqa: F401  (their old home: still importable here)
from .layers import Sigmoid, Softmax, sigmoid, softmax
from .validation import check_batch_size, check_input_range, check_positive_int, data_range, prepare_xy, warn


def _correct(out, target, threshold: float, xp=None):
    """How many rows of ``out`` predict the right class, as a 0-D array on the device (no sync)."""
    xp = xp or array_namespace(out)
    return xp.sum(xp.astype(_hits(out, target, threshold, xp), out.dtype))


def _hits(out, target, threshold: float, xp=None):
    """Which rows of ``out`` predict the right class: a boolean ``(batch,)`` array on the device."""
    xp = xp or array_namespace(out)
    if out.shape[1] > 1:
        pred = xp.argmax(out, axis=1)
        true = target if target.ndim == 1 else xp.argmax(target, axis=1)
        if true.dtype != pred.dtype:
            true = xp.astype(true, pred.dtype)
        hits = pred == true
    else:
        pred = xp.reshape(out, (-1,)) > threshold
        hits = pred == (xp.reshape(target, (-1,)) > 0.5)
    return hits


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


class _EpochTotals:
    """The epoch's loss and hits, kept on the device per step and read back once per window."""

    def __init__(self, xp, classify: bool, threshold: float):
        self.xp, self.classify, self.threshold = xp, classify, threshold
        self.loss, self.correct, self.samples = 0.0, 0.0, 0
        self.losses, self.hits, self.counts = [], [], []

    def add(self, batch_loss, out, target) -> None:
        self.losses.append(batch_loss)
        self.counts.append(out.shape[0])
        self.dtype = out.dtype
        if self.classify:
            self.hits.append(_hits(out, target, self.threshold, self.xp))  # counted once per window

    def read_back(self) -> dict:
        """The window's per-step losses in one transfer (and its hits in one more); the running totals."""
        xp = self.xp
        values = backend.to_numpy(xp.stack(self.losses)).astype("float64")
        self.loss += float(values @ backend.to_numpy(self.counts).astype("float64"))
        if self.classify:
            self.correct += float(backend.to_numpy(xp.sum(xp.astype(xp.concat(self.hits), self.dtype))))
        self.samples += sum(self.counts)
        self.losses, self.hits, self.counts = [], [], []
        return {"losses": values, "samples": self.samples, **self.logs(self.samples)}

    def logs(self, n: int) -> dict:
        return {"loss": self.loss / n, **({"accuracy": self.correct / n} if self.classify else {})}


def fit(model, X, y, *, loss, optimizer, epochs, batch_size, shuffle=True, validation_data=None,
        verbose="auto", callbacks=(), lr=None, check_every: int = 50, checkpoint_dir=None, resume_from=None):
    """Train ``model`` on ``(X, y)``; returns the :class:`~xpnet.callbacks.History` (see ``Sequential.fit``).

    Each step is ``forward -> loss -> backward -> optimizer.step`` with nothing read back; every
    ``check_every`` steps and at each epoch's end the window's losses come back in one transfer and go to
    the callbacks' ``on_batch_end`` (the divergence rollback first, then the progress bar, then the user's).
    """
    # -- checkpoints: resume (model, optimizer, RNG, history, epoch) and where to write ------------
    resumed = None if resume_from is None else checkpoint.resume(model, resume_from, loss, optimizer, lr)
    if resumed is None:
        loss = losses.get("mse" if loss is None else loss)
        optimizer = optim.get("sgd" if optimizer is None else optimizer, lr)
    else:
        loss, optimizer = resumed.loss, resumed.optimizer
    first_epoch, global_step = (0, 0) if resumed is None else (resumed.epoch, resumed.step)
    last = None if checkpoint_dir is None else checkpoint.checkpoint_path(checkpoint_dir)
    # ----------------------------------------------------------------------------------------------
    X, y, classify, val = _prepare(model, X, y, loss, epochs, batch_size, check_every, validation_data)
    dev, xp, n = model.device, model.device.xp, X.shape[0]
    params, grads = model.parameters(), model.gradients()
    steps = list(_batches(n, batch_size))
    verbose = 1 if verbose == "auto" else verbose  # Keras' rule: epoch lines everywhere, the bar on a terminal
    history, progress = History(), ProgressBar()
    if resumed is not None:  # the returned history holds every epoch, those before the checkpoint too
        history.history = resumed.history
        if first_epoch > epochs:
            warn(f"fit: the checkpoint {os.fspath(resume_from)} has done {first_epoch} epochs, more than "
                 f"epochs={epochs}: nothing to train (epochs counts the total, as Keras' initial_epoch)")
    cbs = CallbackList([DivergenceRollback(), progress, history, EpochLine(), *callbacks], model, {
        "epochs": epochs, "steps": len(steps), "samples": n, "check_every": check_every, "verbose": verbose})
    model.stop_training = False
    cbs.on_train_begin()
    try:
        for epoch in range(first_epoch, epochs):
            start = time.perf_counter()
            order = dev.asarray(model.rng.permutation(n), "int64") if shuffle else None
            cbs.on_epoch_begin(epoch)
            totals = _EpochTotals(xp, classify, _threshold(loss))
            for step, (lo, hi) in enumerate(steps):
                xb, yb = _take(xp, X, order, lo, hi), _take(xp, y, order, lo, hi)
                out = model.forward(xb, training=True)
                totals.add(loss.forward(out, yb), out, yb)
                model.backward(loss.backward())
                optimizer.step(params, grads)
                if len(totals.losses) == check_every or step == len(steps) - 1:
                    cbs.on_batch_end(step, totals.read_back())
            backend.synchronize(dev)
            seconds = time.perf_counter() - start
            logs = totals.logs(n)
            if val is not None:
                result = evaluate(model, *val[:2], loss, max(batch_size, 1024), prepared=True, classify=val[2])
                logs.update({f"val_{k}": v for k, v in result.items()})
            logs.update(seconds=seconds, samples_per_s=n / seconds if seconds > 0 else float("inf"))
            cbs.on_epoch_end(epoch, logs)
            global_step += len(steps)
            if last is not None:  # after the callbacks, so that a run one of them stops is saved too
                checkpoint.save_checkpoint(last, model, optimizer, epoch=epoch + 1, step=global_step,
                                           history=history.history)
            if model.stop_training:
                break
    finally:
        progress.close()  # a diverged or interrupted epoch leaves no bar behind
    cbs.on_train_end({k: v[-1] for k, v in history.history.items()})
    return history


def _prepare(model, X, y, loss, epochs, batch_size, check_every, validation_data):
    """Check fit's arguments, move the data to the model's device and record the input range."""
    check_positive_int("epochs", epochs, allow_zero=True)
    check_batch_size(batch_size)
    check_positive_int("check_every", check_every)
    _check_output_layer(model, loss)
    X, y, classify = prepare_xy(model, X, y, loss, "fit", warn_unscaled=True)
    span = data_range(X)
    old = model.input_range
    model.input_range = span if old is None else (min(old[0], span[0]), max(old[1], span[1]))
    val = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("fit: validation_data must be a pair (X_val, y_val)")
        val = prepare_xy(model, validation_data[0], validation_data[1], loss, "validation_data")
    model.loss = loss
    return X, y, classify, val


def _ends_in(model, kinds) -> bool:
    return any(isinstance(layer, kinds) for layer in model.layers[-1:])


def _check_output_layer(model, loss) -> None:
    if isinstance(loss, losses.SoftmaxCrossEntropy) and _ends_in(model, Softmax):
        warn("fit: the model ends in Softmax() and SoftmaxCrossEntropy applies softmax itself (it takes "
             "logits), so softmax is applied twice and training crawls. Remove the final Softmax() "
             "(predict_proba gives probabilities), or use loss='cross_entropy', which takes probabilities.")
    elif isinstance(loss, losses.BinaryCrossEntropy) and _ends_in(model, Sigmoid):
        warn("fit: the model ends in Sigmoid() and BinaryCrossEntropy applies the sigmoid itself (it takes "
             "logits), so the sigmoid is applied twice. Remove the final Sigmoid() (predict_proba gives "
             "probabilities).")


def predict(model, X, batch_size: int = 1024, where: str = "predict"):
    check_batch_size(batch_size)
    X, _, _ = prepare_xy(model, X, None, None, where, targets=False)
    if model.input_range is not None:
        check_input_range(model, data_range(X), where)
    xp = model.device.xp
    outs = [model.forward(X[lo:hi, ...]) for lo, hi in _batches(X.shape[0], batch_size)]
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


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


def predict_classes(model, X, batch_size: int = 1024):
    out = predict(model, X, batch_size, "predict_classes")
    xp = model.device.xp
    if out.shape[1] > 1:
        return xp.argmax(out, axis=1)
    # one output: a probability (after a Sigmoid layer) crosses 0.5 where a logit crosses 0
    threshold = 0.5 if _ends_in(model, Sigmoid) else _threshold(model.loss)
    return xp.astype(out[:, 0] > threshold, xp.int64)


def evaluate(model, X, y, loss, batch_size: int = 1024, *, prepared: bool = False, classify=None) -> dict:
    check_batch_size(batch_size)
    if not prepared:
        X, y, classify = prepare_xy(model, X, y, loss, "evaluate")
        if model.input_range is not None:
            check_input_range(model, data_range(X), "evaluate")
    xp = model.device.xp
    threshold = _threshold(loss)
    batch_losses, hits, counts = [], [], []
    for lo, hi in _batches(X.shape[0], batch_size):
        out = model.forward(X[lo:hi, ...])
        yb = y[lo:hi, ...]
        batch_losses.append(loss.forward(out, yb))
        counts.append(hi - lo)
        if classify:
            hits.append(_correct(out, yb, threshold, xp))
    n = X.shape[0]
    values = backend.to_numpy(xp.stack(batch_losses)).astype("float64")
    result = {"loss": float(values @ backend.to_numpy(counts).astype("float64")) / n}
    if classify:
        result["accuracy"] = float(backend.to_numpy(xp.sum(xp.stack(hits)))) / n
    return result
