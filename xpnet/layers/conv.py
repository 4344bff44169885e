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

    def _columns(self, xpad, out):
        """(n, C*kh*kw, OH*OW): the im2col matrix of each sample."""
        n = xpad.shape[0]
        cols = fast_im2col(xpad, self.kernel_size, self.stride, out)
        return array_namespace(xpad).reshape(cols, (n, cols.shape[1] * cols.shape[2], out[0] * out[1]))

    def forward(self, x, training=False):
        out = self.compute_output_shape(x.shape)[2:]
        xp = array_namespace(x)
        n = x.shape[0]
        W2 = xp.reshape(self.params["W"], (self.out_channels, -1))
        xpad = pad2d(x, *self.padding)
        step = self._chunk(xpad, out)
        if step == n:
            cols = self._columns(xpad, out)
            y = W2 @ cols
        else:
            cols = None  # rebuilt chunk by chunk in backward: never all of them at once
            y = xp.concat([W2 @ self._columns(xpad[s:e, ...], out) for s, e in chunk_bounds(n, step)], axis=0)
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
        chunks = [(0, n)] if cols is not None else chunk_bounds(n, self._chunk(xpad, out))
        W2T = self._w2t_by_offset(xp) if self.input_grad else None
        dW, dxs = None, []
        for s, e in chunks:
            c = cols if cols is not None else self._columns(xpad[s:e, ...], out)
            g = dy2 if len(chunks) == 1 else dy2[s:e, ...]
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

    def _w2t_by_offset(self, xp):
        """W2^T with its rows in (i, j, c) order, as a C-ordered array: the columns' gradient W2T @ dy then
        holds each kernel offset's piece as one block per sample, (C, OH, OW), which col2im reads straight
        through (NumPy, the preset's batch 64 in chunks of 6: 7.6 ms against 10.0 ms)."""
        # C-ordered because NumPy's stacked matmul leaves BLAS for a transposed 2-D operand (802 ms against
        # 20 ms for (288, 64) @ (128, 64, 576)); flattening the permuted view copies it in order.
        (kh, kw), cin = self.kernel_size, self.in_channels
        W2T = xp.permute_dims(xp.reshape(self.params["W"], (self.out_channels, cin, kh * kw)), (2, 1, 0))
        return xp.reshape(xp.reshape(W2T, (-1,)), (kh * kw * cin, self.out_channels))

    def _col2im(self, dcols, padded_shape):
        """``dcols`` (n, kh*kw*C, OH*OW), rows in (i, j, c) order -> the input's gradient (n, C, H, W)."""
        xp = array_namespace(dcols)
        (kh, kw), (oh, ow) = self.kernel_size, self._cache[2]
        d = xp.reshape(dcols, (dcols.shape[0], kh * kw, self.in_channels, oh, ow))
        return fast_col2im(d, self.kernel_size, self.stride, padded_shape[2:])

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
