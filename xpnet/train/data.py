"""fit's data: the arguments about it checked, the validation split, the batches, the device's memory.

The training rows go to the device once (:func:`uploading` says so when they do not fit); each epoch's
batches are slices or ``xp.take`` gathers there. :class:`EpochTotals` keeps each step's loss and metric
hits on the device and reads a window of them back in one transfer. Inference runs in batches that
halve on an out-of-memory error (:func:`shrinking_batches`).
"""

from __future__ import annotations

import contextlib
import math
import traceback

from .. import backend, losses
from ..arguments import check_count, is_number
from ..validation import data_range, prepare_xy, warn
from .checks import check_output_layer
from .resume import fingerprint
from .sources import TextWindows, Windows, check_windows, eval_steps, held_out


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
def uploading(dev, where: str, *arrays):
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



def shrinking_batches(dev, n: int, batch_size: int, where: str, run) -> None:
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


def decision_threshold(loss) -> float:
    # One output unit: logits cross 0 where probabilities cross 0.5.
    return 0.0 if isinstance(loss, losses.BinaryCrossEntropy) else 0.5


def batches(n: int, batch_size: int):
    for lo in range(0, n, batch_size):
        yield lo, min(n, lo + batch_size)


def take(xp, a, order, lo, hi):
    if order is None:
        return a[lo:hi, ...]
    return xp.take(a, order[lo:hi], axis=0)


class Rows:
    """fit's ``(X, y)`` on the device: each epoch a permutation of the rows from the host ``rng`` (none without
    ``shuffle``), each step rows ``lo .. hi`` of it; the same hooks as :class:`xpnet.train.sources.Windows`."""

    def __init__(self, dev, X, y, shuffle: bool):
        self.dev, self.X, self.y, self.shuffle = dev, X, y, shuffle
        self.rows = X.shape[0]

    def epoch(self, rng):
        return self.dev.asarray(rng.permutation(self.rows), "int64") if self.shuffle else None

    def batch(self, order, step: int, lo: int, hi: int):
        xp = self.dev.xp
        return take(xp, self.X, order, lo, hi), take(xp, self.y, order, lo, hi)

    def describe(self) -> dict:
        """What a checkpoint's ``run`` entry keeps of the rows: their count and fingerprint."""
        return {"rows": int(self.rows), "fingerprint": fingerprint(self.dev, self.X, self.y)}



def read_back(xp, batch_losses, hit_counts):
    """Per-batch losses and per-metric hit counts (0-D device arrays) in one transfer, as host float64."""
    values = xp.stack(batch_losses)
    if hit_counts:
        values = xp.concat([values, xp.astype(xp.stack(hit_counts), values.dtype)])
    values = backend.to_numpy(values).astype("float64")
    return values[:len(batch_losses)], values[len(batch_losses):].tolist()


class EpochTotals:
    """The epoch's loss and metric hits, kept on the device per step and read back once per window.

    ``reduce`` is the strategy's ``reduce_window``: the window's figures over every rank's rows."""

    def __init__(self, xp, metrics: list, threshold: float, reduce):
        self.xp, self.metrics, self.threshold, self.reduce = xp, metrics, threshold, reduce
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

    def read_back(self, finite=None) -> dict:
        """The window's per-step losses, hit counts and ``finite`` (the weights' 0-D finiteness flag, or
        ``None``) in one transfer; the running totals (over every rank's rows)."""
        xp = self.xp
        sums = [xp.sum(xp.astype(xp.concat(h), self.dtype)) if h else xp.zeros_like(self.losses[0])
                for h in self.hits]
        values, correct = read_back(xp, self.losses, sums + ([] if finite is None else [xp.astype(finite, self.dtype)]))
        values, self.counts, correct = self.reduce(values, self.counts, correct, finite is not None)
        extra = {} if finite is None else {"state_finite": bool(correct.pop())}
        self.loss += float(values @ backend.to_numpy(self.counts).astype("float64"))
        self.correct = [a + b for a, b in zip(self.correct, correct)]
        self.samples += sum(self.counts)
        self.losses, self.counts = [], []
        self.hits = [[] for _ in self.metrics]
        return {"losses": values, "samples": self.samples, **self.logs(self.samples), **extra}

    def logs(self, n: int) -> dict:
        return {"loss": self.loss / n, **{m.name: c / n for m, c in zip(self.metrics, self.correct)}}


def split_validation(X, y, validation_split):
    """Keras' ``validation_split``: the last ``ceil``-rounded fraction of the rows, before any shuffling."""
    if not (is_number(validation_split) and 0.0 < validation_split < 1.0):
        raise ValueError(f"fit: validation_split must be a number in (0, 1), the fraction of rows held out, got "
                         f"{validation_split!r}")
    n = X.shape[0]
    split_at = int(math.ceil(n * (1.0 - validation_split)))
    if split_at in (0, n):
        raise ValueError(f"fit: validation_split={validation_split} of {n} rows leaves "
                         f"{'no training' if split_at == 0 else 'no validation'} rows; use a fraction that "
                         f"leaves at least one row on each side, or pass validation_data")
    return X[:split_at, ...], y[:split_at, ...], X[split_at:, ...], y[split_at:, ...]


def prepare_data(model, X, y, loss, epochs, batch_size, check_every, validation_data, validation_split=0.0, *,
                 shuffle=True, steps_per_epoch=None, validation_steps=None):
    """Check fit's arguments and move the data to the model's device, changing nothing in the model.

    Returns ``(data, classify, val, span)``: ``data`` the arrays (:class:`Rows`) or a source's windows
    (:class:`~xpnet.train.sources.Windows`), ``val`` the held-out ``(X, y, classify, eval batch size)`` or
    ``None``, ``span`` the training rows' ``(min, max)``, which fit adds to the model's input range (``None``
    for token ids).
    """
    check_count("epochs", epochs, 0)
    check_count("batch_size", batch_size)
    check_count("check_every", check_every)
    if validation_split and validation_data is not None:
        raise ValueError("fit: validation_data and validation_split were both given; pass one of them")
    source = isinstance(X, TextWindows)
    if validation_steps is not None and not (source or isinstance(validation_data, TextWindows)):
        raise ValueError("fit: validation_steps counts the batches of fixed windows a TextWindows source is "
                         "evaluated on; array validation data is evaluated whole: leave validation_steps out")
    check_output_layer(model, loss)
    val = None
    if source:
        check_windows(model, X, y, shuffle=shuffle, validation_split=validation_split, steps_per_epoch=steps_per_epoch)
        data, classify, span = Windows(X, model.device, steps_per_epoch, batch_size), True, None
    else:
        if steps_per_epoch is not None:
            raise ValueError("fit: steps_per_epoch is for a data source that never ends (TextWindows); with arrays "
                             "an epoch is one pass over the rows: leave steps_per_epoch out")
        X, y, classify, span = prepare_xy(model, X, y, loss, "fit", warn_unscaled=True, with_range=True)
        if validation_split:
            X, y, X_val, y_val = split_validation(X, y, validation_split)
            val = (X_val, y_val, classify, max(batch_size, 1024))
            span = data_range(X)  # the training rows' own
        data = Rows(model.device, X, y, shuffle)
    if validation_data is not None:
        val = _held_out(model, validation_data, loss, batch_size, validation_steps)
    return data, classify, val, span


def _held_out(model, validation_data, loss, batch_size: int, validation_steps):
    """fit's ``validation_data`` on the device, with the batch size to evaluate it in."""
    if isinstance(validation_data, TextWindows):  # windows are large: evaluated in training batches
        return held_out(model, validation_data, validation_steps, batch_size, "fit: validation_data",
                        "fit: validation_steps")
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise TypeError("fit: validation_data must be a pair (X_val, y_val), or a TextWindows source")
    return (*prepare_xy(model, validation_data[0], validation_data[1], loss, "validation_data"), max(batch_size, 1024))


def training_set(model, data, classify: bool, batch_size: int, validation_steps, evaluate_train) -> tuple | None:
    """With ``evaluate_train``, what fit evaluates the model on after each epoch besides the held-out data
    (logged as ``train_loss``): a source's fixed windows (as its validation windows: ``validation_steps``
    batches), or all the training rows."""
    if evaluate_train is False:
        return None
    if evaluate_train is not True:
        raise ValueError(f"fit: evaluate_train must be True or False, got {evaluate_train!r}")
    if isinstance(data, Windows):  # (the ids are on the device already)
        return (*data.fixed(eval_steps(validation_steps, "fit: validation_steps")), True, batch_size)
    return data.X, data.y, classify, max(batch_size, 1024)
