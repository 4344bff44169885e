"""2-D convolution over images in NCHW layout: ``Conv2D``, with PyTorch's weight layout so weights carry over
both ways. It is im2col (the stacked windows, see :mod:`.windows`) times the weights as a matrix.

Memory: the columns hold ``N * OH * OW * C * kh * kw`` numbers, ``kh * kw`` times the input. The backend
decides how many samples' columns are built at once (:func:`.windows.fast_im2col_chunk`): the whole
batch unless that passes a memory bound, and on NumPy (and torch on the CPU) chunks that stay in the
CPU's cache. A batch cut into
chunks has each chunk's columns rebuilt in the backward pass from the saved input instead of keeping
them all.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .. import backend
from .. import init as initializers
from ..inplace import add_
from ..arguments import check_count
from .base import Layer, register_layer
from .core import saved_by_name
from .windows import (check_image, chunk_bounds, fast_col2im, fast_im2col, fast_im2col_chunk, output_hw, pad2d,
                      pair, samples_within)


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
    sample, in chunks of samples that the backend chooses: NumPy (and torch on the CPU) keeps each chunk's
    columns within 2**20 elements (4 MiB in float32, in the CPU's cache), the others take the whole batch
    at once unless its columns pass 2**26 elements (256 MiB in float32). Set ``layer.im2col_budget`` to a
    number of elements to bound one layer's columns on any backend (``None``, the default, leaves it to
    the backend).

        >>> layer = Conv2D(1, 32, 3)        # (N, 1, 28, 28) -> (N, 32, 26, 26)
    """

    im2col_budget = None
    example_input_shape = (1, 28, 28)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 init="he_normal"):
        super().__init__()
        for name, n in (("in_channels", in_channels), ("out_channels", out_channels)):
            check_count(f"Conv2D: {name}", n, 1, "a positive int")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "Conv2D: kernel_size", 1)
        self.stride = pair(stride, "Conv2D: stride", 1)
        self.padding = pair(padding, "Conv2D: padding", 0)
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

    def compute_output_shape(self, input_shape):
        shape = check_image(self, input_shape, self.in_channels)
        return (shape[0], self.out_channels, *output_hw(self, shape, self.kernel_size, self.stride, self.padding))

    def _chunk(self, xpad, out) -> int:
        """Samples per chunk: the backend's choice, or as many as keep the columns within ``im2col_budget``
        elements where the layer sets one (at least one)."""
        per_sample = self.in_channels * self.kernel_size[0] * self.kernel_size[1] * out[0] * out[1]
        if self.im2col_budget is None:
            return fast_im2col_chunk(xpad, per_sample)
        return samples_within(self.im2col_budget, per_sample, xpad.shape[0])

    def forward(self, x, training=False):
        out = self.compute_output_shape(x.shape)[2:]
        xpad = pad2d(x, *self.padding)
        b = self.params["b"] if self.bias else None
        y, cols = backend.dispatch("conv2d_forward", conv2d_forward, xpad, self.params["W"], b, self.stride, out,
                                   self._chunk(xpad, out))
        self._cache = (xpad, cols, out, tuple(x.shape))
        return y

    def backward(self, dy):
        """With ``dy2 = dy`` as (N, O, OH*OW): ``dW = sum_n dy2[n] @ cols[n]^T``, ``db = sum_{n,p,q} dy``,
        and ``dx = col2im(W2^T @ dy2[n])`` cut back from the padded frame."""
        xpad, cols, out, in_shape = self.saved("_cache")
        step = xpad.shape[0] if cols is not None else self._chunk(xpad, out)
        dW, db, dx = backend.dispatch("conv2d_backward", conv2d_backward, dy, xpad, cols, self.params["W"],
                                      self.stride, out, step, self.bias, self.input_grad)
        self.grads.clear()
        self.grads["W"] = dW
        if self.bias:
            self.grads["b"] = db
        if not self.input_grad:
            return None
        (ph, pw), (h, w) = self.padding, in_shape[2:]
        return dx[:, :, ph:ph + h, pw:pw + w] if ph or pw else dx

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "bias": self.bias, "init": self.init}

    @classmethod
    def from_config(cls, config):
        name = config.get("init", "he_normal")
        if isinstance(name, str) and not initializers.is_known(name):
            config = {**config, "init": saved_by_name(name, "Conv2D")}
        return cls(**config)


def _columns(xpad, kernel, stride, out):
    """(n, C*kh*kw, OH*OW): the im2col matrix of each sample."""
    cols = fast_im2col(xpad, kernel, stride, out)
    return array_namespace(xpad).reshape(cols, (xpad.shape[0], cols.shape[1] * cols.shape[2], out[0] * out[1]))


def conv2d_forward(xpad, W, b, stride, out, step):
    """``(y, cols)``: the convolution of the padded input ``xpad`` (N, C, H, W) with ``W`` (O, C, kh, kw),
    plus ``b`` (O,) unless ``None``, built ``step`` samples at a time; ``cols`` the columns where the batch
    was one chunk (the backward pass takes them), else ``None`` (never all of them at once)."""
    xp = array_namespace(xpad)
    n, o, kernel = xpad.shape[0], W.shape[0], tuple(W.shape[2:])
    W2 = xp.reshape(W, (o, -1))
    if step >= n:
        cols = _columns(xpad, kernel, stride, out)
        y = W2 @ cols
    else:
        cols = None
        y = xp.concat([W2 @ _columns(xpad[s:e, ...], kernel, stride, out) for s, e in chunk_bounds(n, step)], axis=0)
    y = xp.reshape(y, (n, o, *out))
    if b is not None:  # into the product's fresh memory where it is writeable
        y = add_(y, xp.reshape(b, (o, 1, 1)))
    return y, cols


def conv2d_backward(dy, xpad, cols, W, stride, out, step, bias: bool, input_grad: bool):
    """``(dW, db, dxpad)`` for the output's gradient ``dy``: ``db`` ``None`` without ``bias``, ``dxpad`` (the
    padded input's gradient) ``None`` without ``input_grad``; ``cols`` :func:`conv2d_forward`'s, or ``None``
    to build them again ``step`` samples at a time."""
    xp = array_namespace(dy)
    n, o, kernel = dy.shape[0], W.shape[0], tuple(W.shape[2:])
    dy2 = xp.reshape(dy, (n, o, out[0] * out[1]))
    chunks = [(0, n)] if cols is not None else chunk_bounds(n, step)
    W2T = _w2t_by_offset(xp, W) if input_grad else None
    dW, dxs = None, []
    for s, e in chunks:
        c = cols if cols is not None else _columns(xpad[s:e, ...], kernel, stride, out)
        g = dy2 if len(chunks) == 1 else dy2[s:e, ...]
        part = xp.sum(g @ xp.matrix_transpose(c), axis=0)  # (O, C*kh*kw), no (O, N*P) copy of dy
        dW = part if dW is None else dW + part
        if input_grad:
            d = xp.reshape(W2T @ g, (e - s, kernel[0] * kernel[1], W.shape[1], *out))
            dxs.append(fast_col2im(d, kernel, stride, xpad.shape[2:]))
    db = xp.sum(dy, axis=(0, 2, 3)) if bias else None
    dx = (dxs[0] if len(dxs) == 1 else xp.concat(dxs, axis=0)) if input_grad else None
    return xp.reshape(dW, W.shape), db, dx


def _w2t_by_offset(xp, W):
    """W2^T with its rows in (i, j, c) order, as a C-ordered array: the columns' gradient W2T @ dy then
    holds each kernel offset's piece as one block per sample, (C, OH, OW), which col2im reads straight
    through (NumPy, the preset's batch 64 in chunks of 6: 7.6 ms against 10.0 ms)."""
    # C-ordered because NumPy's stacked matmul leaves BLAS for a transposed 2-D operand (802 ms against
    # 20 ms for (288, 64) @ (128, 64, 576)); flattening the permuted view copies it in order.
    o, cin = W.shape[0], W.shape[1]
    W2T = xp.permute_dims(xp.reshape(W, (o, cin, W.shape[2] * W.shape[3])), (2, 1, 0))
    return xp.reshape(xp.reshape(W2T, (-1,)), (W.shape[2] * W.shape[3] * cin, o))
