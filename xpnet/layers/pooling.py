"""Pooling over images in NCHW layout: ``MaxPool2D`` and ``AvgPool2D`` over each window (see :mod:`.windows`),
and ``GlobalAvgPool2D`` over all pixels of each channel."""

from __future__ import annotations

from array_api_compat import array_namespace, device

from .. import backend
from ..inplace import mul_
from .base import Layer, register_layer
from .windows import check_image, fast_col2im, output_hw, pair, windows


class _Pool2D(Layer):
    """Shared by the window poolings: the kernel, the stride (the kernel's by default), the shapes."""

    example_input_shape = (1, 28, 28)

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, f"{name}: kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(stride, f"{name}: stride", 1)
        self._cache = None

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def compute_output_shape(self, input_shape):
        shape = check_image(self, input_shape)
        return (*shape[:2], *output_hw(self, shape, self.kernel_size, self.stride))

    def _windows(self, x):
        out = self.compute_output_shape(x.shape)[2:]
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
        out = self.compute_output_shape(x.shape)[2:]
        y, state = backend.dispatch("max_pool2d", max_pool2d, x, self.kernel_size, self.stride, out)
        self._cache = (state, tuple(x.shape))
        return y

    def backward(self, dy):
        state, shape = self.saved("_cache")
        if not self.input_grad:
            return None
        return backend.dispatch("max_pool2d_backward", max_pool2d_backward, dy, state, self.kernel_size,
                                self.stride, shape)


def max_pool2d(x, kernel, stride, out):
    """``(y, grew)``: the maximum of each window of ``x`` (N, C, H, W), and where the running maximum grew
    (what :func:`max_pool2d_backward` needs)."""
    xp = array_namespace(x)
    views = windows(x, kernel, stride, out)
    # A running maximum over the views, keeping where it grew: one compare and one maximum per window
    # position over (N, C, OH, OW). Stacking the views instead copied the input, then max and argmax
    # each reduced over a strided axis (at batch 64 of the MNIST preset: 18 ms -> 5 ms); and where()
    # to track an index costs NumPy more than the two passes together. maximum() keeps a NaN, as
    # torch's max_pool2d does.
    best, grew = views[0], []
    for v in views[1:]:
        grew.append(v > best)
        best = xp.maximum(best, v)
    return (best if grew else xp.asarray(best, copy=True)), grew  # never a view of the input


def max_pool2d_backward(dy, grew, kernel, stride, shape):
    """The input's gradient (``shape``): each window's ``dy`` to its first maximum."""
    xp = array_namespace(dy)
    # The first maximum is at the last position where the running maximum grew (strictly), else at 0.
    firsts, later = [], None
    for g in reversed(grew):
        firsts.append(g if later is None else xp.logical_and(g, xp.logical_not(later)))
        later = g if later is None else xp.logical_or(later, g)
    cols = xp.reshape(dy, (dy.shape[0], 1, *dy.shape[1:]))  # (N, 1, C, OH, OW)
    if later is not None:  # the window's kh*kw pieces at once: one cast and one product, into the cast's
        # fresh memory (NumPy, the preset at batch 64: 0.6 ms; a new product array 3.6 ms, page-faulted in)
        firsts.append(xp.logical_not(later))
        cols = mul_(xp.astype(xp.stack(firsts[::-1], axis=1), dy.dtype), cols)
    return fast_col2im(cols, kernel, stride, shape[2:])


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
        share = array_namespace(dy).reshape(dy / float(k), (dy.shape[0], 1, *dy.shape[1:]))
        cols = array_namespace(dy).broadcast_to(share, (dy.shape[0], k, *dy.shape[1:]))  # a view: no copies
        return fast_col2im(cols, self.kernel_size, self.stride, shape[2:])


@register_layer
class GlobalAvgPool2D(Layer):
    """Mean over all pixels of each channel: ``(N, C, H, W) -> (N, C)``, ``y[n, c] = mean_{h,w} x[n, c, h, w]``
    (Keras' GlobalAveragePooling2D; torch's AdaptiveAvgPool2d(1) followed by a flatten).

        >>> GlobalAvgPool2D()               # (N, 64, 7, 7) -> (N, 64)
    """

    example_input_shape = (1, 28, 28)

    def compute_output_shape(self, input_shape):
        return check_image(self, input_shape)[:2]

    def forward(self, x, training=False):
        self.compute_output_shape(x.shape)
        self._shape = tuple(x.shape)
        return array_namespace(x).mean(x, axis=(2, 3))

    def backward(self, dy):
        if not self.input_grad:
            return None
        xp = array_namespace(dy)
        n, c, h, w = self._shape
        share = xp.reshape(dy / float(h * w), (n, c, 1, 1))
        return share * xp.ones((1, 1, h, w), dtype=dy.dtype, device=device(dy))  # a fresh array, not a view

