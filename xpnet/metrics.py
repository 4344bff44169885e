"""Metrics that ``fit`` and ``evaluate`` report besides the loss: accuracy and top-k accuracy.

A metric turns one batch into a ``(batch,)`` array of hits, on the device; the training loop sums them
there and reads every metric's count back in the same transfer as the losses' window. On outputs with
positions, ``(B, T, classes)`` (a language model's), a row's hit is the fraction of its ``T`` positions
that are right, so the sum over rows divided by the rows is the fraction of all ``B*T`` positions.

    >>> model.fit(X, y, loss="softmax_cross_entropy", metrics=["accuracy", "top_5_accuracy"])
    >>> model.evaluate(X_test, y_test, metrics=[TopKAccuracy(3)])["top_3_accuracy"]
"""

from __future__ import annotations

import re

from .arguments import check_count
from .backend import namespace as array_namespace


def _labels(out, target, xp):
    """Class labels from integer labels (shaped like ``out`` without its last axis) or one-hot rows."""
    return target if target.ndim == out.ndim - 1 else xp.argmax(target, axis=-1)


def _per_row(hits, dtype, xp):
    """``(batch,)`` hits: as they are for one position per row, else each row's fraction of right positions."""
    if hits.ndim == 1:
        return hits
    return xp.mean(xp.astype(hits, dtype), axis=tuple(range(1, hits.ndim)))


class Accuracy:
    """The fraction of rows whose predicted class is the target: ``argmax(out) == y`` (ties: the first
    largest output wins, as NumPy's argmax), or for one output unit ``(out > threshold) == (y > 0.5)``,
    the threshold being 0 on logits and 0.5 on probabilities. On ``(B, T, classes)`` outputs with
    ``(B, T)`` targets: the fraction of the ``B*T`` positions whose predicted class is the target."""

    name = "accuracy"

    def hits(self, out, target, threshold: float):
        xp = array_namespace(out)
        if out.shape[-1] > 1:
            pred = xp.argmax(out, axis=-1)
            true = _labels(out, target, xp)
            if true.dtype != pred.dtype:
                true = xp.astype(true, pred.dtype)
            return _per_row(pred == true, out.dtype, xp)
        return (xp.reshape(out, (-1,)) > threshold) == (xp.reshape(target, (-1,)) > 0.5)

    def __repr__(self):
        return "Accuracy()"


class TopKAccuracy:
    """The fraction of rows whose target class is among the ``k`` largest outputs.

    A row is a hit when fewer than ``k`` classes score strictly higher than the target: ties at the
    boundary count in the target's favour, as ``tf.math.in_top_k`` and Keras' ``TopKCategoricalAccuracy``
    do (so ``TopKAccuracy(1)`` can exceed :class:`Accuracy`, whose argmax breaks ties by position).
    Computed without a sort: ``sum(out > out[target]) < k``. Needs more than one output unit. On
    ``(B, T, classes)`` outputs: the fraction of positions, as :class:`Accuracy`.
    """

    def __init__(self, k: int = 5):
        self.k = check_count("TopKAccuracy: k", k)
        self.name = f"top_{k}_accuracy"

    def hits(self, out, target, threshold: float):
        xp = array_namespace(out)
        if out.shape[-1] < 2:
            raise ValueError(f"{self.name}: the model has one output unit, so there is no ranking of classes; use "
                             f"'accuracy' for a binary classifier")
        true = _labels(out, target, xp)
        if true.dtype != xp.int64:
            true = xp.astype(true, xp.int64)
        score = xp.take_along_axis(out, true[..., None], axis=-1)
        above = xp.sum(xp.astype(out > score, out.dtype), axis=-1)
        return _per_row(above < self.k, out.dtype, xp)

    def __repr__(self):
        return f"TopKAccuracy({self.k})"


_TOP_K = re.compile(r"top_(\d+)_accuracy")


def get(spec):
    """A metric from ``"accuracy"``, ``"top_K_accuracy"`` (e.g. ``"top_5_accuracy"``) or the object itself."""
    if isinstance(spec, (Accuracy, TopKAccuracy)):
        return spec
    if spec in ("accuracy", "acc"):
        return Accuracy()
    match = _TOP_K.fullmatch(spec) if isinstance(spec, str) else None
    if match:
        return TopKAccuracy(int(match.group(1)))
    raise ValueError(f"unknown metric {spec!r}: use 'accuracy', 'top_5_accuracy' (any k), or "
                     f"xpnet.metrics.TopKAccuracy(k)")


def get_all(specs, classify: bool, where: str) -> list:
    """The metrics to report: ``specs`` resolved, or ``[Accuracy()]`` for class targets when ``specs`` is None."""
    if specs is None:
        return [Accuracy()] if classify else []
    if isinstance(specs, (str, Accuracy, TopKAccuracy)):
        raise TypeError(f"{where}: metrics must be a list, e.g. metrics=[{specs!r}]")
    found = [get(s) for s in specs]
    if found and not classify:
        raise ValueError(f"{where}: metrics {[m.name for m in found]} need class targets (integer labels or "
                         f"one-hot rows), and these targets are not; leave metrics out for regression")
    names = [m.name for m in found]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: metrics {names} name one metric twice")
    return found
