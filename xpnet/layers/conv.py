"""Convolution and pooling over images in NCHW layout: ``Conv2D``, ``MaxPool2D``, ``AvgPool2D``,
``GlobalAvgPool2D``, with PyTorch's weight layout so weights carry over both ways.

All of them see an image through its *windows*: for each offset ``(i, j)`` of a ``kh x kw`` kernel, the
strided slice ``x[:, :, i::sh, j::sw]`` (cut to the output's size) is one "shifted view" of shape
``(N, C, OH, OW)``. Stacking the ``kh * kw`` views gives ``im2col``'s columns ``(N, C, kh*kw, OH, OW)``,
and then

    Conv2D:     y[n] = W2 @ cols[n] + b,   W2 = W reshaped to (out_channels, C*kh*kw)   (one matrix product)
    MaxPool2D:  y = max over the kh*kw axis       AvgPool2D: y = mean over the kh*kw axis

The backward pass needs the transpose of "take the windows" (``col2im``): each input pixel receives the
sum of the gradients of every window that saw it. Libraries do that with a scatter-add, which the Array
API lacks (and JAX's arrays cannot be written in place), so :func:`col2im` *adds* the ``kh * kw``
shifted pieces, each put back at its offset by concatenating zeros around it (and, with a stride,
zeros between its rows and columns). Slicing, stacking, concatenation and ``matmul`` are all in the
standard, so these lines run unchanged on NumPy, CuPy, PyTorch, JAX and array-api-strict.

Memory: the columns hold ``N * OH * OW * C * kh * kw`` numbers, ``kh * kw`` times the input. Above
``Conv2D.im2col_budget`` elements a batch is processed in chunks of samples, and the backward pass then
rebuilds each chunk's columns from the saved input instead of keeping them all.
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

from .. import backend
from .. import init as initializers
from .._inplace import add_
from .base import Layer, register_layer


def _pair(value, what: str, minimum: int) -> tuple[int, int]:
    """``(a, b)`` from an int or a pair of ints, each ``>= minimum``; ``what`` names it in the error."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair):
        raise ValueError(f"{what} must be an int >= {minimum} or a pair of them (height, width), got {value!r}")
    return pair


def _output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """PyTorch's (and ONNX's) floor rule: how many kernel positions fit along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


def _zeros(x, shape):
    return array_namespace(x).zeros(shape, dtype=x.dtype, device=device(x))


def pad2d(x, ph: int, pw: int):
    """``x`` with ``ph`` rows of zeros above and below and ``pw`` columns left and right (the standard
    has no ``pad``; concatenation is)."""
    return _pad_sides(x, ph, ph, pw, pw)


def _pad_sides(x, top: int, bottom: int, left: int, right: int):
    xp = array_namespace(x)
    if top or bottom:
        lead = x.shape[:-2]
        x = xp.concat([p for p in (_zeros(x, (*lead, top, x.shape[-1])) if top else None, x,
                                   _zeros(x, (*lead, bottom, x.shape[-1])) if bottom else None)
                       if p is not None], axis=-2)
    if left or right:
        lead = x.shape[:-1]
        x = xp.concat([p for p in (_zeros(x, (*lead, left)) if left else None, x,
                                   _zeros(x, (*lead, right)) if right else None) if p is not None], axis=-1)
    return x


def windows(x, kernel, stride, out):
    """The ``kh * kw`` shifted views of ``x`` (N, C, H, W), in row-major kernel order, each (N, C, OH, OW):
    view ``(i, j)`` holds ``x[n, c, i + sh*p, j + sw*q]`` at ``[n, c, p, q]``."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    return [x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] for i in range(kh) for j in range(kw)]


def im2col(x, kernel, stride, out):
    """``(N, C, kh*kw, OH, OW)``: the windows stacked, so ``cols[n, c, i*kw + j, p, q] = x[n, c, i + sh*p, j + sw*q]``."""
    return array_namespace(x).stack(windows(x, kernel, stride, out), axis=2)


def _dilate(piece, stride: int, axis: int):
    """``piece`` with ``stride - 1`` zeros between its entries along ``axis`` (-2 or -1): where a strided
    window's values came from."""
    if stride == 1:
        return piece
    xp = array_namespace(piece)
    n = piece.shape[axis]
    # stacked on a new axis right after `axis`: (..., n, stride, ...) reshapes to each entry then its zeros
    spread = xp.stack([piece] + [_zeros(piece, piece.shape)] * (stride - 1), axis=axis)
    shape = (*piece.shape[:-2], n * stride, piece.shape[-1]) if axis == -2 else (*piece.shape[:-1], n * stride)
    spread = xp.reshape(spread, shape)
    return spread[..., :(n - 1) * stride + 1, :] if axis == -2 else spread[..., :(n - 1) * stride + 1]


def col2im(pieces, kernel, stride, size):
    """The transpose of :func:`windows`: ``pieces`` is a list of ``kh*kw`` arrays (N, C, OH, OW) in the same
    order, and the result (N, C, H, W) holds at each pixel the sum of the pieces' values that came from it.

    Each piece is dilated by the stride and framed by zeros to sit at its offset, and the frames are added:
    no scatter, no writes into an array. When the windows tile the image exactly (stride == kernel, as
    pooling does by default) no pixel is in two windows, and the pieces are interleaved by one reshape instead.
    """
    xp = array_namespace(pieces[0])
    (kh, kw), (sh, sw), (h, w) = kernel, stride, size
    n, c, oh, ow = pieces[0].shape
    if (sh, sw) == (kh, kw):
        # (N, C, kh, kw, OH, OW) -> (N, C, OH, kh, OW, kw) -> (N, C, OH*kh, OW*kw): window (p, q) back in place
        tiled = xp.reshape(xp.stack(pieces, axis=2), (n, c, kh, kw, oh, ow))
        tiled = xp.reshape(xp.permute_dims(tiled, (0, 1, 4, 2, 5, 3)), (n, c, oh * kh, ow * kw))
        return _pad_sides(tiled, 0, h - oh * kh, 0, w - ow * kw)  # rows and columns no window reached
    span_h, span_w = sh * (oh - 1) + 1, sw * (ow - 1) + 1
    total = None
    for i in range(kh):
        # the kw pieces of kernel row i, each at its column offset, summed before the row offset is applied
        row = None
        for j in range(kw):
            piece = _pad_sides(_dilate(pieces[i * kw + j], sw, -1), 0, 0, j, w - j - span_w)
            row = piece if row is None else row + piece
        row = _pad_sides(_dilate(row, sh, -2), i, h - i - span_h, 0, 0)
        total = row if total is None else total + row
    return total


def _im2col(x, kernel, stride, out):
    """:func:`im2col`, by the backend's own routine where it has one (NumPy: a strided view, one copy)."""
    fast = backend.routine(array_namespace(x), "im2col")
    return (fast or im2col)(x, kernel, stride, out)


def _col2im(pieces, kernel, stride, size):
    """:func:`col2im`, by the backend's own routine where it has one (NumPy: slice-adds into one buffer)."""
    fast = backend.routine(array_namespace(pieces[0]), "col2im")
    return (fast or col2im)(pieces, kernel, stride, size)


def _check_input(layer, x, channels):
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(batch, {channels}, height, width)" if channels is not None else "(batch, channels, height, width)"
        hint = " (NCHW: add a Reshape((1, 28, 28)) first for flat MNIST rows)" if x.ndim == 2 else ""
        raise ValueError(f"{layer!r} expects input of shape {want}, got {tuple(x.shape)}{hint}")


def _out_hw(layer, x, kernel, stride, padding=(0, 0)):
    h, w = x.shape[2], x.shape[3]
    oh, ow = (_output_size(s, k, st, p) for s, k, st, p in zip((h, w), kernel, stride, padding))
    if oh < 1 or ow < 1:
        raise ValueError(f"{layer!r}: the input's {h}x{w} pixels (padded by {padding[0]}x{padding[1]}) are "
                         f"smaller than the {kernel[0]}x{kernel[1]} kernel; use a smaller kernel or more padding")
    return oh, ow


@register_layer
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as torch.nn.Conv2d): for input ``x`` (N, C, H, W),

        y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] * xpad[n, c, sh*p + i, sw*q + j]

    with ``xpad`` the input framed by ``padding`` zeros. ``params["W"]`` has PyTorch's layout
    ``(out_channels, in_channels, kh, kw)``, ``params["b"]`` shape ``(out_channels,)``; the output is
    ``(N, out_channels, OH, OW)`` with ``OH = (H + 2*ph - kh) // sh + 1`` (and the same for OW).
    ``kernel_size``, ``stride`` and ``padding`` take an int or a ``(height, width)`` pair.

    ``init``: ``"he_normal"`` (default: std sqrt(2 / fan_in) with ``fan_in = in_channels*kh*kw``, for the
    ReLU that usually follows), ``"lecun_normal"``, ``"glorot_uniform"``, ``"zeros"`` or a callable
    ``f(shape, rng, device, dtype)`` given the 4-D shape. Biases start at zero.

    Computed as im2col (the stacked windows, see the module) times ``W`` as a matrix, one product per
    sample; batches whose columns would exceed ``im2col_budget`` elements (2**20: 4 MiB in float32) go
    through in chunks of samples. Small chunks are also faster on NumPy: a fresh 85 MB column array is
    page-faulted in on every step (batch 128 of the MNIST preset: 270 ms a step with 64 MiB chunks, 216 ms
    with 16 MiB), and 4 MiB of columns stay in the CPU's cache (batch 64: 75 ms a step against 80 ms with
    16 MiB; measured on this 2-core CPU). Set ``layer.im2col_budget`` to change it for one layer.

        >>> layer = Conv2D(1, 32, 3)        # (N, 1, 28, 28) -> (N, 32, 26, 26)
    """

    im2col_budget = 2**20

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 init="he_normal"):
        super().__init__()
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"Conv2D: {name} must be a positive int, got {n!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "Conv2D: kernel_size", 1)
        self.stride = _pair(stride, "Conv2D: stride", 1)
        self.padding = _pair(padding, "Conv2D: padding", 0)
        self.bias = bool(bias)
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self._init = initializers.get(init)
        self._cache = None

    def param_shapes(self):
        shapes = {"W": (self.out_channels, self.in_channels, *self.kernel_size)}
        if self.bias:
            shapes["b"] = (self.out_channels,)
        return shapes

    def build(self, device, rng, dtype="float32", init=True) -> None:
        draw = self._init if init else initializers.zeros
        self.params["W"] = draw(self.param_shapes()["W"], rng, device, dtype)
        if self.bias:
            self.params["b"] = initializers.zeros((self.out_channels,), rng, device, dtype)

    def _chunk(self, n: int, out) -> int:
        """Samples per chunk: as many as keep the columns within ``im2col_budget`` elements (at least one)."""
        per_sample = self.in_channels * self.kernel_size[0] * self.kernel_size[1] * out[0] * out[1]
        return max(1, min(n, self.im2col_budget // per_sample))

    def _columns(self, xpad, out):
        """(n, C*kh*kw, OH*OW): the im2col matrix of each sample."""
        n = xpad.shape[0]
        cols = _im2col(xpad, self.kernel_size, self.stride, out)
        return array_namespace(xpad).reshape(cols, (n, cols.shape[1] * cols.shape[2], out[0] * out[1]))

    def forward(self, x, training=False):
        _check_input(self, x, self.in_channels)
        xp = array_namespace(x)
        out = _out_hw(self, x, self.kernel_size, self.stride, self.padding)
        n = x.shape[0]
        W2 = xp.reshape(self.params["W"], (self.out_channels, -1))
        xpad = pad2d(x, *self.padding)
        step = self._chunk(n, out)
        if step == n:
            cols = self._columns(xpad, out)
            y = W2 @ cols
        else:
            cols = None  # rebuilt chunk by chunk in backward: never all of them at once
            y = xp.concat([W2 @ self._columns(xpad[s:s + step, ...], out) for s in range(0, n, step)], axis=0)
        y = xp.reshape(y, (n, self.out_channels, *out))
        if self.bias:  # into the product's fresh memory where it is writeable
            y = add_(y, xp.reshape(self.params["b"], (self.out_channels, 1, 1)))
        self._cache = (xpad, cols, out, tuple(x.shape))
        return y

    def backward(self, dy):
        """With ``dy2 = dy`` as (N, O, OH*OW): ``dW = sum_n dy2[n] @ cols[n]^T``, ``db = sum_{n,p,q} dy``,
        and ``dx = col2im(W2^T @ dy2[n])`` cut back from the padded frame."""
        xp = array_namespace(dy)
        xpad, cols, out, in_shape = self._cache
        n = dy.shape[0]
        dy2 = xp.reshape(dy, (n, self.out_channels, out[0] * out[1]))
        step = n if cols is not None else self._chunk(n, out)
        # W2^T with its rows in (i, j, c) order, as a C-ordered array: the columns' gradient W2T @ dy then
        # holds each kernel offset's piece as one block per sample, (C, OH, OW), which col2im reads
        # straight through (NumPy, the preset's batch 64 in chunks of 6: 7.6 ms against 10.0 ms).
        # C-ordered because NumPy's stacked matmul leaves BLAS for a transposed 2-D operand (802 ms against
        # 20 ms for (288, 64) @ (128, 64, 576)); flattening the permuted view copies it in order.
        (kh, kw), cin = self.kernel_size, self.in_channels
        W2T = xp.permute_dims(xp.reshape(self.params["W"], (self.out_channels, cin, kh * kw)), (2, 1, 0))
        W2T = xp.reshape(xp.reshape(W2T, (-1,)), (kh * kw * cin, self.out_channels))
        dW, dxs = None, []
        for s in range(0, n, step):
            c = cols if cols is not None else self._columns(xpad[s:s + step, ...], out)
            g = dy2[s:s + step, ...]
            part = xp.sum(g @ xp.matrix_transpose(c), axis=0)  # (O, C*kh*kw), no (O, N*P) copy of dy
            dW = part if dW is None else dW + part
            if self.input_grad:
                dxs.append(self._col2im(W2T @ g, xpad.shape))
        self.grads.clear()
        self.grads["W"] = xp.reshape(dW, self.params["W"].shape)
        if self.bias:
            self.grads["b"] = xp.sum(dy, axis=(0, 2, 3))
        if not self.input_grad:
            return None
        dx = dxs[0] if len(dxs) == 1 else xp.concat(dxs, axis=0)
        (ph, pw), (h, w) = self.padding, in_shape[2:]
        return dx[:, :, ph:ph + h, pw:pw + w] if ph or pw else dx

    def _col2im(self, dcols, padded_shape):
        """``dcols`` (n, kh*kw*C, OH*OW), rows in (i, j, c) order -> the input's gradient (n, C, H, W)."""
        xp = array_namespace(dcols)
        (kh, kw), (oh, ow) = self.kernel_size, self._cache[2]
        d = xp.reshape(dcols, (dcols.shape[0], kh * kw, self.in_channels, oh, ow))
        return _col2im([d[:, k, ...] for k in range(kh * kw)], self.kernel_size, self.stride, padded_shape[2:])

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "bias": self.bias, "init": self.init}

    @classmethod
    def from_config(cls, config):
        name = config.get("init", "he_normal")
        if isinstance(name, str) and name not in initializers.INITIALIZERS:
            from .core import _saved_by_name
            config = {**config, "init": _saved_by_name(name, "Conv2D")}
        return cls(**config)


class _Pool2D(Layer):
    """Shared by the window poolings: the kernel, the stride (the kernel's by default), the shapes."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, f"{name}: kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, f"{name}: stride", 1)
        self._cache = None

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def _windows(self, x):
        _check_input(self, x, None)
        out = _out_hw(self, x, self.kernel_size, self.stride)
        return windows(x, self.kernel_size, self.stride, out), out


@register_layer
class MaxPool2D(_Pool2D):
    """Max over each ``kh x kw`` window (torch.nn.MaxPool2d without padding or dilation), stride = kernel
    by default: ``y[n, c, p, q] = max_{i,j} x[n, c, sh*p + i, sw*q + j]``.

    The gradient goes to the window's maximum; on a tie, to the *first* maximum in row-major window order
    (``argmax``'s rule in the Array API standard, and the index PyTorch's CPU kernel keeps), not split.

        >>> MaxPool2D(2)                    # (N, C, 24, 24) -> (N, C, 12, 12)
    """

    def forward(self, x, training=False):
        xp = array_namespace(x)
        views, out = self._windows(x)
        # A running maximum over the views, keeping where it grew: one compare and one maximum per window
        # position over (N, C, OH, OW). Stacking the views instead copied the input, then max and argmax
        # each reduced over a strided axis (at batch 64 of the MNIST preset: 18 ms -> 5 ms); and where()
        # to track an index costs NumPy more than the two passes together. maximum() keeps a NaN, as
        # torch's max_pool2d does.
        best, grew = views[0], []
        for v in views[1:]:
            grew.append(v > best)
            best = xp.maximum(best, v)
        self._cache = (grew, out, tuple(x.shape))
        return best if grew else xp.asarray(best, copy=True)  # never a view of the input

    def backward(self, dy):
        if not self.input_grad:
            return None
        xp = array_namespace(dy)
        grew, out, shape = self._cache
        # The first maximum is at the last position where the running maximum grew (strictly), else at 0.
        pieces, later = [], None
        for g in reversed(grew):
            first = g if later is None else xp.logical_and(g, xp.logical_not(later))
            pieces.append(dy * xp.astype(first, dy.dtype))
            later = g if later is None else xp.logical_or(later, g)
        pieces.append(dy if later is None else dy * xp.astype(xp.logical_not(later), dy.dtype))
        return _col2im(pieces[::-1], self.kernel_size, self.stride, shape[2:])


@register_layer
class AvgPool2D(_Pool2D):
    """Mean over each ``kh x kw`` window (torch.nn.AvgPool2d without padding), stride = kernel by default:
    ``y[n, c, p, q] = mean_{i,j} x[n, c, sh*p + i, sw*q + j]``; each pixel of a window gets ``dy / (kh*kw)``.

        >>> AvgPool2D(2)                    # (N, C, 24, 24) -> (N, C, 12, 12)
    """

    def forward(self, x, training=False):
        views, out = self._windows(x)
        self._cache = (out, tuple(x.shape))
        total = views[0]
        for v in views[1:]:  # a running sum: no (N, C, kh*kw, OH, OW) stack needed for a mean
            total = total + v
        return total / float(len(views))

    def backward(self, dy):
        if not self.input_grad:
            return None
        out, shape = self._cache
        k = self.kernel_size[0] * self.kernel_size[1]
        share = dy / float(k)
        return _col2im([share] * k, self.kernel_size, self.stride, shape[2:])


@register_layer
class GlobalAvgPool2D(Layer):
    """Mean over all pixels of each channel: ``(N, C, H, W) -> (N, C)``, ``y[n, c] = mean_{h,w} x[n, c, h, w]``
    (Keras' GlobalAveragePooling2D; torch's AdaptiveAvgPool2d(1) followed by a flatten).

        >>> GlobalAvgPool2D()               # (N, 64, 7, 7) -> (N, 64)
    """

    def forward(self, x, training=False):
        _check_input(self, x, None)
        self._shape = tuple(x.shape)
        return array_namespace(x).mean(x, axis=(2, 3))

    def backward(self, dy):
        if not self.input_grad:
            return None
        xp = array_namespace(dy)
        n, c, h, w = self._shape
        share = xp.reshape(dy / float(h * w), (n, c, 1, 1))
        return share * xp.ones((1, 1, h, w), dtype=dy.dtype, device=device(dy))  # a fresh array, not a view

