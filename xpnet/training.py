"""The training loop: data on the device once, batches gathered there, the loss read back only to report.

One step is ``forward -> loss -> backward -> optimizer.step``, with no host-device transfer and no
synchronization. Every ``check_every`` steps (and at the end of each epoch) the per-step losses are
stacked on the device and read back in one transfer: that is where the epoch loss, the accuracy and
the divergence check come from.
"""

from __future__ import annotations

import math
import sys
import time

from array_api_compat import array_namespace, is_writeable_array

from . import backend
from . import losses as losses_mod
from . import optim
from .layers import Sigmoid, Softmax, softmax
from .validation import check_batch_size, check_input_range, check_positive_int, data_range, prepare_xy, warn


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the model was reset to its last finite weights."""

    def __init__(self, epoch: int, step: int, value: float, restored_step: int):
        self.epoch, self.step, self.value, self.restored_step = epoch, step, value, restored_step
        super().__init__(
            f"training diverged: the loss was {value} at epoch {epoch + 1}, step {step + 1}. The model keeps "
            f"its last finite weights (from before step {restored_step + 1} of that epoch). Try a lower "
            f"learning rate (e.g. a tenth), a smaller init, or check the data for NaN/inf.")


class History:
    """Per-epoch metrics, like Keras': ``history["loss"]``, ``history["val_accuracy"]``, ...

    Keys: ``loss``, ``accuracy`` (classification only), ``val_loss``, ``val_accuracy`` (with
    ``validation_data``), ``seconds`` and ``samples_per_s``.
    """

    def __init__(self):
        self.history: dict[str, list] = {}

    def append(self, logs: dict) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __repr__(self):
        return f"History({self.history!r})"


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
    return 0.0 if isinstance(loss, losses_mod.BinaryCrossEntropy) else 0.5


def _batches(n: int, batch_size: int):
    for lo in range(0, n, batch_size):
        yield lo, min(n, lo + batch_size)


def _take(xp, a, order, lo, hi):
    if order is None:
        return a[lo:hi, ...]
    return xp.take(a, order[lo:hi], axis=0)


def _snapshot(params, into=None) -> dict | None:
    """Copies of the parameters if they are all finite, else ``None``.

    ``into`` (an earlier snapshot) is overwritten in place where its arrays are writeable, so there is
    never a second copy of the weights alive, nor an allocation per window.
    """
    for p in params.values():
        xp = array_namespace(p)
        if not bool(xp.all(xp.isfinite(p))):
            return None
    copies = {}
    for k, p in params.items():
        old = None if into is None else into.get(k)
        if old is not None and is_writeable_array(old) and old.shape == p.shape and old.dtype == p.dtype:
            old[...] = p
            copies[k] = old
        else:
            copies[k] = array_namespace(p).asarray(p, copy=True)
    return copies


def _progress(total: int, epoch: int, epochs: int, verbose: int):
    if verbose < 1 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="sample", leave=False,
                dynamic_ncols=True, file=sys.stderr)


def fit(model, X, y, *, loss, optimizer, epochs, batch_size, shuffle=True, validation_data=None,
        verbose="auto", callbacks=(), lr=None, check_every: int = 50):
    loss = losses_mod.get(loss)
    optimizer = optim.get(optimizer, lr)
    check_positive_int("epochs", epochs, allow_zero=True)
    check_batch_size(batch_size)
    check_positive_int("check_every", check_every)
    if verbose == "auto":
        # Keras' rule: epoch lines everywhere (a log file, a notebook, CI), the progress bar on a terminal.
        verbose = 1
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
    dev = model.device
    xp = dev.xp
    params, grads = model.parameters(), model.gradients()
    n = X.shape[0]
    threshold = _threshold(loss)
    history = History()
    good = None

    for epoch in range(epochs):
        start = time.perf_counter()
        order = dev.asarray(model.rng.permutation(n), "int64") if shuffle else None
        total_loss, total_correct = 0.0, 0.0
        window, hits, counts, window_start = [], [], [], 0
        good = _snapshot(params, good)
        bar = _progress(n, epoch, epochs, verbose)
        step_ranges = list(_batches(n, batch_size))
        for step, (lo, hi) in enumerate(step_ranges):
            xb, yb = _take(xp, X, order, lo, hi), _take(xp, y, order, lo, hi)
            out = model.forward(xb, training=True)
            window.append(loss.forward(out, yb))
            model.backward(loss.backward())
            optimizer.step(params, grads)
            counts.append(hi - lo)
            if classify:
                hits.append(_hits(out, yb, threshold, xp))  # counted once per window, below
            if len(window) == check_every or step == len(step_ranges) - 1:
                # The one read-back of the window: per-step losses (and hits) in a single transfer.
                values = backend.to_numpy(xp.stack(window)).astype("float64")
                if not all(math.isfinite(v) for v in values.tolist()):
                    bad = next(i for i, v in enumerate(values.tolist()) if not math.isfinite(v))
                    if good is not None:
                        for k, v in good.items():
                            params[k] = v
                    if bar is not None:
                        bar.close()
                    raise TrainingDiverged(epoch, window_start + bad, float(values[bad]), window_start)
                total_loss += float(values @ backend.to_numpy(counts).astype("float64"))
                if classify:
                    total_correct += float(backend.to_numpy(xp.sum(xp.astype(xp.concat(hits), X.dtype))))
                if bar is not None:
                    bar.update(sum(counts))
                    bar.set_postfix(loss=f"{total_loss / hi:.4f}")
                window, hits, counts, window_start = [], [], [], step + 1
                if step < len(step_ranges) - 1:
                    good = _snapshot(params, good) or good
        if bar is not None:
            bar.close()
        backend.synchronize(dev)
        seconds = time.perf_counter() - start
        logs = {"loss": total_loss / n}
        if classify:
            logs["accuracy"] = total_correct / n
        if val is not None:
            result = evaluate(model, val[0], val[1], loss, max(batch_size, 1024), prepared=True, classify=val[2])
            logs.update({f"val_{k}": v for k, v in result.items()})
        logs["seconds"] = seconds
        logs["samples_per_s"] = n / seconds if seconds > 0 else float("inf")
        history.append(logs)
        if verbose >= 1:
            print(format_epoch(epoch, epochs, logs, dev), flush=True)
        if any(cb(epoch, logs) is True for cb in callbacks):
            break
    return history


def _check_output_layer(model, loss) -> None:
    last = model.layers[-1] if model.layers else None
    if isinstance(loss, losses_mod.SoftmaxCrossEntropy) and isinstance(last, Softmax):
        warn("fit: the model ends in Softmax() and SoftmaxCrossEntropy applies softmax itself (it takes "
             "logits), so softmax is applied twice and training crawls. Remove the final Softmax() "
             "(predict_proba gives probabilities), or use loss='cross_entropy', which takes probabilities.")
    elif isinstance(loss, losses_mod.BinaryCrossEntropy) and isinstance(last, Sigmoid):
        warn("fit: the model ends in Sigmoid() and BinaryCrossEntropy applies the sigmoid itself (it takes "
             "logits), so the sigmoid is applied twice. Remove the final Sigmoid() (predict_proba gives "
             "probabilities).")


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
    last = model.layers[-1] if model.layers else None
    if isinstance(last, (Softmax, Sigmoid)):
        return out
    xp = model.device.xp
    if isinstance(model.loss, losses_mod.SoftmaxCrossEntropy) and out.shape[1] > 1:
        return softmax(out, axis=1)
    if isinstance(model.loss, losses_mod.BinaryCrossEntropy):
        return 1.0 / (1.0 + xp.exp(-out))
    raise ValueError(f"predict_proba: the outputs of this model are not probabilities and its loss "
                     f"({model.loss!r}) does not say how to make them: the model should end in Softmax() or "
                     f"Sigmoid(), or be trained with SoftmaxCrossEntropy or BinaryCrossEntropy on logits. "
                     f"Use predict() for the raw outputs.")


def predict_classes(model, X, batch_size: int = 1024):
    out = predict(model, X, batch_size, "predict_classes")
    xp = model.device.xp
    if out.shape[1] > 1:
        return xp.argmax(out, axis=1)
    last = model.layers[-1] if model.layers else None
    threshold = 0.5 if isinstance(last, (Softmax, Sigmoid)) else _threshold(model.loss)
    return xp.astype(xp.reshape(out, (-1,)) > threshold, xp.int64)


def evaluate(model, X, y, loss, batch_size: int = 1024, *, prepared: bool = False, classify=None) -> dict:
    check_batch_size(batch_size)
    if not prepared:
        X, y, classify = prepare_xy(model, X, y, loss, "evaluate")
        if model.input_range is not None:
            check_input_range(model, data_range(X), "evaluate")
    xp = model.device.xp
    threshold = _threshold(loss)
    losses, hits, counts = [], [], []
    for lo, hi in _batches(X.shape[0], batch_size):
        out = model.forward(X[lo:hi, ...])
        yb = y[lo:hi, ...]
        losses.append(loss.forward(out, yb))
        counts.append(hi - lo)
        if classify:
            hits.append(_correct(out, yb, threshold, xp))
    n = X.shape[0]
    values = backend.to_numpy(xp.stack(losses)).astype("float64")
    result = {"loss": float(values @ backend.to_numpy(counts).astype("float64")) / n}
    if classify:
        result["accuracy"] = float(backend.to_numpy(xp.sum(xp.stack(hits)))) / n
    return result
