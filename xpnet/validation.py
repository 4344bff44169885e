"""Checks at the public edges: bad data gets a clear error here, not a traceback deep in an array library.

Every message says where (``fit``, ``evaluate``, ...), what was given, what was expected and, where
there is one, what to do.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

from . import backend
from .layers import model_input_dtype, model_output_shapes

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class UnscaledInputWarning(UserWarning):
    """``fit`` got what look like raw 0..255 pixels; ``warnings.filterwarnings("ignore", category=...)``
    silences it where the values are meant as they are."""


_SILENCE = "warnings.filterwarnings('ignore', category=xpnet.UnscaledInputWarning)"


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` a ``UserWarning`` (or ``category``) that points at the user's line, not at xpnet's."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def data_range(X) -> tuple[float, float]:
    """``(min, max)`` of an array on its device, read back in one transfer."""
    xp = backend.device_of(X).xp
    lo, hi = backend.to_numpy(xp.stack([xp.min(X), xp.max(X)])).tolist()
    return float(lo), float(hi)


def check_input_range(model, span, where: str) -> None:
    """Warn when inputs lie far outside what the model was trained on (raw 0..255 pixels for a 0..1 net).

    "Far" is more than half the trained span beyond either end: new data varies, but a net trained on
    0..1 pixels given 0..255 (or one trained on 0..255 given 0..1) answers nonsense without an error.
    """
    trained = getattr(model, "input_range", None)
    if trained is None or model_input_dtype(getattr(model, "layers", ())) is not None:
        return  # token ids are not scaled: the first layer refuses those it has no row for
    lo, hi = trained
    margin = (hi - lo) / 2
    if span[0] < lo - margin or span[1] > hi + margin:
        # pixel advice only where the ranges say pixels: tabular data gets none (a scaler's test fold)
        pixels = hi <= 1.0 < span[1] <= 255.0 and span[0] >= 0.0
        fix = ("raw 0..255 pixels: X / 255, or X / 255 * 0.99 + 0.01 for the tutorial's scaling" if pixels else
               "the same transform, with the statistics of the training data")
        warn(f"{where}: X holds values from {span[0]:g} to {span[1]:g}, but the model was trained on inputs "
             f"from {lo:g} to {hi:g}; its outputs for these are likely meaningless. Scale X as the training "
             f"data was ({fix}).")


def _as_array(a, name: str, where: str):
    """An Array API array as given, or a NumPy array made from lists/tuples; rejects non-numeric data."""
    if a is None:
        raise ValueError(f"{where}: {name} is None")
    if not backend.is_array(a):
        try:
            a = backend.to_numpy(a) if isinstance(a, (list, tuple)) else backend.to_numpy(a.__array__())
        except Exception as exc:
            raise TypeError(f"{where}: {name} must be an array or nested lists of numbers, "
                            f"got {type(a).__name__} ({exc})") from None
    kind = getattr(a.dtype, "kind", None)  # NumPy dtypes only; other libraries have no object dtype
    if kind is not None and kind not in "biuf":
        raise TypeError(f"{where}: {name} has dtype {a.dtype}, not numbers; convert it with "
                        f"np.asarray({name}, dtype=np.float32) (labels: dtype=np.int64)")
    return a


def _xp(a):
    return backend.device_of(a).xp


def _is_integral(a) -> bool:
    kind = getattr(a.dtype, "kind", None)
    if kind is not None:
        return kind in "iub"
    xp = backend.device_of(a).xp
    return xp.isdtype(a.dtype, ("integral", "bool"))


def _is_floating(a) -> bool:
    kind = getattr(a.dtype, "kind", None)
    if kind is not None:
        return kind == "f"
    return backend.device_of(a).xp.isdtype(a.dtype, "real floating")


def _first_fixed(model, shape):
    """The first layer that fixes one sample's shape (a Dense, a BatchNorm1d, a Reshape) and the shape that
    inputs of ``shape`` reach it with, where the layers before it only rearrange a sample's values (the
    activations, a Flatten); else ``(None, None)``: a layer that computes new values (a convolution) takes
    ``X`` first, and its forward says what it takes."""
    size = math.prod(shape[1:])
    for layer in model.layers:
        if layer.fixed_input_shape() is not None:
            return layer, shape
        try:
            shape = layer.compute_output_shape(shape)
        except ValueError:
            return None, None
        if shape is None or math.prod(shape[1:]) != size:
            return None, None
    return None, None


def _takes(layer, shape) -> bool:
    try:
        layer.compute_output_shape(shape)
    except ValueError:
        return False
    return True


def _check_first_layer(model, X, where: str) -> None:
    first, reached = _first_fixed(model, tuple(X.shape))
    if first is None:
        return
    expects = f"(samples, {', '.join(map(str, first.fixed_input_shape()))})"
    if X.ndim == 1:
        raise ValueError(f"{where}: X has shape {tuple(X.shape)}, one dimension; the first layer {first!r} "
                         f"expects {expects}. For one sample use X.reshape(1, -1)")
    if not _takes(first, reached):
        flat = _takes(first, (reached[0], math.prod(reached[1:])))  # what a Flatten would make of them
        raise ValueError(f"{where}: X has shape {tuple(X.shape)} but the first layer {first!r} expects {expects}"
                         + ("; add a Flatten() layer first" if flat else ""))


def output_width(model, shape):
    """How many values the model gives per sample for inputs of ``shape`` (with the batch axis), as its layers
    tell it: the width of its 2-D output. ``None`` where they do not tell it, or do not take that shape (the
    forward pass says why), or the output is not 2-D."""
    try:
        shapes = model_output_shapes(model.layers, shape)
    except ValueError:
        return None
    last = shapes[-1] if shapes else None
    return last[1] if last is not None and len(last) == 2 else None


def _all_finite(a) -> bool:
    xp = backend.device_of(a).xp
    # NaN and inf propagate through a sum, which allocates nothing; isfinite() over the whole data set
    # would make a boolean copy of it (47 MB for MNIST). Only a sum that overflows needs the full check.
    if bool(xp.isfinite(xp.sum(a))):
        return True
    return bool(xp.all(xp.isfinite(a)))


def prepare_xy(model, X, y, loss, where: str, targets: bool = True, warn_unscaled: bool = False, *,
               with_range: bool = False):
    """Validate ``(X, y)`` for ``model`` and move them to its device.

    Returns ``(X, y, classify)``: ``X`` in the model's dtype, ``y`` as int64 labels or float targets,
    both on the model's device (arrays from the host or another device are moved there), and whether
    accuracy makes sense for these targets. ``warn_unscaled`` warns (:class:`UnscaledInputWarning`) about
    integer inputs above 1 and floats that look like raw 0..255 pixels (:func:`_pixel_floats`).
    ``with_range`` appends ``X``'s ``(min, max)`` (:func:`data_range`), which the check for NaN and inf
    computes anyway.
    """
    X, span = prepare_x(model, X, where, warn_unscaled)
    n, dev = X.shape[0], model.device
    if not targets:
        return (X, None, False, span) if with_range else (X, None, False)
    if y is None:
        raise ValueError(f"{where}: y is None; pass the targets (labels or rows) for X")

    y = _as_array(y, "y", where)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"{where}: X has {n} samples but y has shape {tuple(y.shape)}; "
                         f"they must have the same length")
    width = output_width(model, tuple(X.shape))
    if _is_integral(y):
        out = X, _labels(y, width, loss, where, dev, model.dtype), True
        return (*out, span) if with_range else out
    if not _is_floating(y):
        raise TypeError(f"{where}: y has dtype {y.dtype}; use int64 labels or float targets")
    if y.ndim == 1 and width not in (None, 1):
        hint = ("these look like class labels: pass them as integers, y.astype(np.int64)"
                if _integer_valued(y) else f"the model has {width} outputs")
        raise ValueError(f"{where}: y has shape {tuple(y.shape)}, floats of one column, but the model "
                         f"outputs {width} values per sample; {hint}")
    if y.ndim > 2:
        raise ValueError(f"{where}: y has shape {tuple(y.shape)}; targets must be 1-D labels ({n},) or "
                         f"2-D rows: expected ({n}, {width})")
    if y.ndim == 2 and width is not None and y.shape[1] != width:
        raise ValueError(f"{where}: y has shape {tuple(y.shape)} but the model outputs {width} values "
                         f"per sample: expected ({n}, {width})")
    y = dev.asarray(y, model.dtype)
    if not _all_finite(y):
        raise ValueError(f"{where}: y contains NaN or infinite values")
    classify = (y.ndim == 2 and y.shape[1] > 1) or _zero_one(y)
    return (X, y, classify, span) if with_range else (X, y, classify)


def prepare_x(model, X, where: str, warn_unscaled: bool = False):
    """``(X, span)``: ``X`` checked for ``model`` and moved to its device, in its dtype (integers where its first
    layer takes ids: :attr:`~xpnet.layers.Layer.input_dtype`), and its ``(min, max)`` (see :func:`prepare_xy`)."""
    X = _as_array(X, "X", where)
    if X.ndim == 0:
        raise ValueError(f"{where}: X is a scalar; pass a 2-D array (samples, features)")
    n = X.shape[0]
    if n == 0:
        raise ValueError(f"{where}: X is empty (0 samples)")
    _check_first_layer(model, X, where)
    if not _is_floating(X) and not _is_integral(X):
        raise TypeError(f"{where}: X has dtype {X.dtype}; use float32 data")
    ids = model_input_dtype(model.layers)  # "int64" where the first layer takes token ids, else None
    if ids is not None and not _is_integral(X):
        raise TypeError(f"{where}: X has dtype {X.dtype}, but the first layer {model.layers[0]!r} takes integer "
                        f"ids; pass them as integers: X.astype(np.int64)")
    # the max on X's own device, one scalar read back (not a host copy of X)
    top = int(backend.to_numpy(_xp(X).max(X))) if warn_unscaled and _is_integral(X) and ids is None else 0
    if top > 1:
        warn(f"{where}: X holds integers up to {top} (raw pixels?); the network "
             f"sees them unscaled, so sigmoid and softmax units saturate and training stalls. Scale them "
             f"first: X / 255 (or X / 255 * 0.99 + 0.01, the tutorial's scaling). If the values are meant "
             f"as they are: {_SILENCE}.", UnscaledInputWarning)
    floats = _is_floating(X)
    X = model.device.asarray(X, ids or model.dtype)
    # min and max propagate NaN (the standard says so) and reach an inf: the range the callers need is
    # the finiteness check too, two passes over X where a separate sum made three (20 ms of MNIST).
    span = data_range(X)
    if not (math.isfinite(span[0]) and math.isfinite(span[1])):
        raise ValueError(f"{where}: X contains NaN or infinite values; clean or impute them first")
    if model.layers:
        try:
            model.layers[0].check_input_values(*span)  # Embedding: every id has a row (no check per step)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if warn_unscaled and floats and _pixel_floats(X, span):
        warn(f"{where}: X holds floats from {span[0]:g} to {span[1]:g}, whole numbers (raw 0..255 pixels "
             f"as floats?); the network sees them unscaled, so sigmoid and softmax units saturate and training "
             f"stalls. Scale them first: X / 255 (or X / 255 * 0.99 + 0.01, the tutorial's scaling). If the "
             f"values are meant as they are: {_SILENCE}.", UnscaledInputWarning)
    return X, span


def _pixel_floats(X, span) -> bool:
    """Whether float ``X`` looks like raw 8-bit pixels: within 0..255, reaching past 127, and (in its first
    1024 rows) at least 9 values in 10 whole numbers.

    Each part keeps a kind of data out: negative values (a StandardScaler's output), a top below 128
    (scikit-learn's 0..16 digits, counts, ages), a top above 255 (prices, 16-bit images), fractions
    (measurements). Eight-bit images pass all four, as floats or not.
    """
    if not (span[0] >= 0.0 and 128.0 <= span[1] <= 255.0):
        return False
    xp = _xp(X)
    head = X[:min(X.shape[0], 1024), ...]  # whole-number pixels show in any 1024 rows: no pass over all X
    whole = xp.mean(xp.astype(head == xp.round(head), head.dtype))
    return float(whole) >= 0.9


def _integer_valued(y) -> bool:
    h = backend.to_numpy(y)
    return bool(((h == h.round()) & (h >= 0)).all())


def _zero_one(y) -> bool:
    h = backend.to_numpy(y)
    return bool(((h == 0) | (h == 1)).all())


def _labels(y, width, loss, where, dev, dev_dtype):
    if y.ndim != 1:
        raise ValueError(f"{where}: integer labels must be 1-D (samples,), got shape {tuple(y.shape)}")
    h = backend.to_numpy(y)
    low, high = int(h.min()), int(h.max())
    classes = 2 if width == 1 else width
    if classes is not None and (low < 0 or high >= classes):
        raise ValueError(f"{where}: labels must be in 0..{classes - 1} for a model with {width} output(s), "
                         f"got labels from {low} to {high}")
    if width == 1:
        # One output unit: 0/1 labels are its targets, as floats shaped like the output.
        return dev.asarray(h.reshape(-1, 1), dev_dtype)
    return dev.asarray(h, "int64")
