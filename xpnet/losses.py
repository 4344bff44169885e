"""Losses: ``forward(pred, target) -> 0-D array`` (mean over the batch) and ``backward() -> dpred``.

The loss value stays on the device as a 0-D array; the training loop reads it back only when it
reports, so a step never waits for the GPU.
"""

from __future__ import annotations

import math

from array_api_compat import device

from . import backend
from .backend import namespace as array_namespace
from .layers.activations import sigmoid


def _check_rows(name, pred, target):
    if pred.ndim != 2:
        raise ValueError(f"{name}: predictions must be 2-D (batch, outputs), got shape {tuple(pred.shape)}")
    if target.shape[0] != pred.shape[0]:
        raise ValueError(f"{name}: {target.shape[0]} targets for {pred.shape[0]} predictions "
                         f"(shapes {tuple(target.shape)} and {tuple(pred.shape)})")


def one_hot(labels, n_classes: int, dtype, xp=None):
    """``(n,)`` integer labels -> ``(n, n_classes)`` rows of 0 and 1 in ``dtype``, on the labels' device."""
    xp = xp or array_namespace(labels)
    classes = xp.arange(n_classes, dtype=labels.dtype, device=device(labels))
    return xp.astype(labels[..., None] == classes, dtype)


def as_targets(name, pred, target, xp=None):
    """Targets as float rows shaped like ``pred``: integer labels become one-hot rows (0/1 for one output)."""
    xp = xp or array_namespace(pred)
    _check_rows(name, pred, target)
    # (targets of pred's dtype are float rows: no dtype query, ~4 us a step at batch 1 on NumPy)
    if target.dtype != pred.dtype and xp.isdtype(target.dtype, "integral"):
        if target.ndim != 1:
            raise ValueError(f"{name}: integer labels must be 1-D (batch,), got shape {tuple(target.shape)}")
        if pred.shape[1] > 1:
            return one_hot(target, pred.shape[1], pred.dtype, xp)
        # One output: 0/1 labels are its targets (a one-hot over a single class would flip them).
        target = xp.astype(target, pred.dtype)
    if target.ndim == 1 and pred.shape[1] == 1:
        target = xp.reshape(target, (-1, 1))
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"{name}: targets of shape {tuple(target.shape)} do not match predictions "
                         f"of shape {tuple(pred.shape)}")
    return target if target.dtype == pred.dtype else xp.astype(target, pred.dtype)


class Loss:
    name = "loss"

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def get_config(self) -> dict:
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSE(Loss):
    """The seeds' squared error ``L = mean_batch( sum_outputs 1/2 (t - o)^2 )``; ``dL/do = (o - t) / batch``.

    Summed (not averaged) over the outputs and halved, so its gradient is the seeds' ``-(t - o)``
    per sample; note this is ``outputs / 2`` times PyTorch's ``MSELoss(reduction="mean")``.
    Targets may be integer labels (then one-hot) or floats shaped like the predictions.
    """

    name = "mse"

    def forward(self, pred, target):
        xp = array_namespace(pred)
        t = as_targets("MSE", pred, target, xp)
        self._diff = pred - t
        return 0.5 * xp.sum(self._diff * self._diff) / pred.shape[0]

    def backward(self):
        return self._diff / self._diff.shape[0]


class SoftmaxCrossEntropy(Loss):
    """Softmax and cross-entropy fused: ``L = mean_positions( -sum_k t_k log softmax(z)_k )`` on logits ``z``.

    ``z`` is ``(batch, classes)``, or ``(..., classes)`` with any leading axes (a language model's
    ``(B, T, V)``): the mean is over every position, ``B*T`` of them, as PyTorch's
    ``cross_entropy(z.view(-1, V), t.view(-1))``. ``dL/dz = (softmax(z) - t) / positions``: the seeds'
    ``(r - y)`` error term. Targets are integer labels shaped like ``z`` without its last axis
    (``(batch,)``, ``(B, T)``) or probability rows shaped like ``z`` (one-hot or soft). The log-softmax
    uses the max shift, so logits of +-1e4 give finite values. Feed it logits, not a Softmax layer's output.
    """

    name = "softmax_cross_entropy"

    def forward(self, logits, target):
        loss, self._saved = backend.dispatch("softmax_cross_entropy", softmax_cross_entropy, logits, target)
        return loss

    def backward(self):
        return backend.dispatch("softmax_cross_entropy_backward", softmax_cross_entropy_backward, *self._saved)


def softmax_cross_entropy(logits, target):
    """``(loss, saved)``: :class:`SoftmaxCrossEntropy`'s mean over every position (the rows of 2-D logits, the
    B*T of (B, T, V)), and what :func:`softmax_cross_entropy_backward` takes (``exp(z - max z)``, its sums
    over the last axis, and the integer labels or the target rows)."""
    xp = array_namespace(logits)
    labels, t = _class_targets("SoftmaxCrossEntropy", logits, target, xp)
    # log softmax(z) = s - log(sum exp(s)) with s = z - max(z). exp(s) and its sums are kept, so the
    # backward's softmax is one division instead of a second exp over the batch.
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    sum_e = xp.sum(e, axis=-1, keepdims=True)
    n = math.prod(logits.shape[:-1])
    if labels is None:
        return -xp.sum(t * (shifted - xp.log(sum_e))) / n, (e, sum_e, t)
    # the true class's shifted logit picked out: no one-hot (B, T, V) array in the forward
    picked = xp.take_along_axis(shifted, labels[..., None], axis=-1)
    return xp.sum(xp.log(sum_e) - picked) / n, (e, sum_e, labels)


def softmax_cross_entropy_backward(e, sum_e, target):
    """``dL/dz = (softmax(z) - t) / positions``, ``t`` the one-hot rows of integer labels (target rows have
    the logits' dtype, labels an integer one)."""
    t = target if target.dtype == e.dtype else one_hot(target, e.shape[-1], e.dtype)
    return (e / sum_e - t) / math.prod(e.shape[:-1])


def _class_targets(name, logits, target, xp):
    """``(labels, None)``: class ids (the library's index dtype, int64 but for JAX's 32-bit mode) shaped like ``logits`` without its last axis; or ``(None, rows)``:
    float targets shaped like ``logits`` (2-D logits go through :func:`as_targets`, as the other losses)."""
    integral = xp.isdtype(target.dtype, "integral")
    if logits.ndim <= 2:
        if not (logits.ndim == 2 and integral and target.ndim == 1 and logits.shape[1] > 1):
            return None, as_targets(name, logits, target, xp)  # (its messages for 2-D predictions)
        _check_rows(name, logits, target)
    if integral:
        if tuple(target.shape) != tuple(logits.shape[:-1]):
            raise ValueError(f"{name}: integer targets of shape {tuple(target.shape)} for logits of shape "
                             f"{tuple(logits.shape)}: expected {tuple(logits.shape[:-1])}, one class id per "
                             f"position")
        # the library's own index dtype: int64, or JAX's int32 when its 64-bit mode is off (an int64 cast would warn)
        index = xp.__array_namespace_info__().default_dtypes()["indexing"]
        return (target if target.dtype == index else xp.astype(target, index)), None
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(f"{name}: targets of shape {tuple(target.shape)} do not match logits of shape "
                         f"{tuple(logits.shape)} (give class ids of shape {tuple(logits.shape[:-1])} or "
                         f"probability rows shaped like the logits)")
    return None, (target if target.dtype == logits.dtype else xp.astype(target, logits.dtype))


class CrossEntropy(Loss):
    """Cross-entropy on probabilities (a Softmax output): ``L = mean_batch(-sum t log p)``.

    ``dL/dp = -t / p / batch``; probabilities are clamped to ``[1e-7, 1]`` first. Prefer
    :class:`SoftmaxCrossEntropy` on logits; this one exists for networks that end in ``Softmax``.
    Not after ``Sigmoid``: ``-t log p`` pulls only the true class's output up, so every output drifts
    to 1 (``fit`` refuses it); for one sigmoid output use :class:`BinaryCrossEntropy` on the logits.
    """

    name = "cross_entropy"
    eps = 1e-7

    def forward(self, prob, target):
        xp = array_namespace(prob)
        t = as_targets("CrossEntropy", prob, target, xp)
        self._t, self._p = t, xp.maximum(prob, self.eps)
        return -xp.sum(t * xp.log(self._p)) / prob.shape[0]

    def backward(self):
        return -self._t / self._p / self._t.shape[0]


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits ``z`` (like PyTorch's ``BCEWithLogitsLoss``), mean over all elements.

    ``L = mean( max(z, 0) - z t + log(1 + exp(-|z|)) )``, which never overflows;
    ``dL/dz = (sigmoid(z) - t) / size``. Targets in [0, 1], shaped like ``z`` (or ``(batch,)`` for one
    output).
    """

    name = "binary_cross_entropy"

    def forward(self, logits, target):
        xp = array_namespace(logits)
        t = as_targets("BinaryCrossEntropy", logits, target, xp)
        self._z, self._t = logits, t
        loss = xp.maximum(logits, 0.0) - logits * t + xp.log1p(xp.exp(-xp.abs(logits)))
        return xp.sum(loss) / (logits.shape[0] * logits.shape[1])

    def backward(self):
        z = self._z
        return (sigmoid(z) - self._t) / (z.shape[0] * z.shape[1])


LOSSES = {"mse": MSE, "softmax_cross_entropy": SoftmaxCrossEntropy, "cross_entropy": CrossEntropy,
          "binary_cross_entropy": BinaryCrossEntropy}

# Each spelling means one thing: names with "softmax_" take logits (PyTorch's CrossEntropyLoss), the plain
# "cross_entropy" and Keras' names take probabilities, as Keras' do by default (from_logits=False).
ALIASES = {"bce": "binary_cross_entropy", "categorical_crossentropy": "cross_entropy",
           "categorical_cross_entropy": "cross_entropy", "sparse_categorical_crossentropy": "cross_entropy",
           "sparse_categorical_cross_entropy": "cross_entropy"}
# Short names that meant logits here but read as probabilities (or the reverse) elsewhere: refused.
AMBIGUOUS = ("ce", "xent", "crossentropy")


def get(loss):
    """A loss from its name (``"mse"``, ``"softmax_cross_entropy"``, ...) or the instance itself."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = loss.lower().replace("-", "_")
        if key in AMBIGUOUS:
            raise ValueError(f"ambiguous loss {loss!r}: say which cross-entropy. loss='softmax_cross_entropy' "
                             f"takes logits (a model that ends in Dense, as PyTorch's CrossEntropyLoss); "
                             f"loss='cross_entropy' takes probabilities (a model that ends in Softmax(), as "
                             f"Keras' categorical_crossentropy)")
        key = ALIASES.get(key, key)
        if key in LOSSES:
            return LOSSES[key]()
    raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)} or pass a Loss instance")
