"""What the image layers (``Conv2D`` in :mod:`.conv`, the poolings in :mod:`.pooling`) share: images in NCHW
layout seen through their *windows*, and the shapes that come out.

For each offset ``(i, j)`` of a ``kh x kw`` kernel, the strided slice ``x[:, :, i::sh, j::sw]`` (cut to the
output's size) is one "shifted view" of shape ``(N, C, OH, OW)``. Stacking the ``kh * kw`` views gives
``im2col``'s columns ``(N, C, kh*kw, OH, OW)``, and then

    Conv2D:     y[n] = W2 @ cols[n] + b,   W2 = W reshaped to (out_channels, C*kh*kw)   (one matrix product)
    MaxPool2D:  y = max over the kh*kw axis       AvgPool2D: y = mean over the kh*kw axis

The backward pass needs the transpose of "take the windows" (``col2im``): each input pixel receives the
sum of the gradients of every window that saw it. Libraries do that with a scatter-add, which the Array
API lacks (and JAX's arrays cannot be written in place), so :func:`col2im` *adds* the ``kh * kw``
shifted pieces, each moved to its offset by framing it with zeros and reading the frames back at a
shorter row length (and, with a stride, zeros between its rows and columns). Slicing, stacking,
concatenation, reshaping and ``matmul`` are all in the standard, so these lines run unchanged on NumPy,
CuPy, PyTorch, JAX and array-api-strict.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace, device

from .. import backend
from ..arguments import is_count

def pair(value, what: str, minimum: int) -> tuple[int, int]:
    """``(a, b)`` from an int or a pair of ints, each ``>= minimum``; ``what`` names it in the error."""
    both = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(both) != 2 or not all(is_count(v, minimum) for v in both):
        raise ValueError(f"{what} must be an int >= {minimum} or a pair of them (height, width), got {value!r}")
    return both


def output_size(size: int, kernel: int, stride: int, pad: int) -> int:
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


def _shift_add(x, k_axis: int, m_axis: int, stride: int, size: int):
    """``x`` (lead..., k, mid..., m, rest...) -> (lead..., mid..., size + 1, rest...): the ``k`` blocks
    ``x[..., j, ...]``, each spread by the stride along ``m`` and moved ``j`` places on, summed:

        out[..., u, ...] = sum over j, q with u = j + stride*q of x[..., j, ..., q, ...]

    (the last entry along ``m``, ``u = size``, is a zero that keeps the shape whole).

    Each block is spread (``stride - 1`` zeros after each entry along ``m``) and framed by zeros to
    ``size + 1`` entries along ``m``. Laid end to end and read back as blocks one step along ``m``
    shorter, block ``j`` starts ``j`` steps early, so its entries land ``j`` places on, after the frame
    zeros of the row before. The same ten operations for any ``k``, on contiguous memory (no transposing
    copy); on a GPU each is a launch.
    """
    xp = array_namespace(x)
    shape = x.shape
    lead, k, mid, m, rest = shape[:k_axis], shape[k_axis], shape[k_axis + 1:m_axis], shape[m_axis], shape[m_axis + 1:]
    if stride > 1:  # (..., m, 1, rest) next to zeros (..., m, stride - 1, rest): each entry, then its zeros
        x = xp.reshape(x, (*lead, k, *mid, m, 1, *rest))
        x = xp.concat([x, _zeros(x, (*lead, k, *mid, m, stride - 1, *rest))], axis=m_axis + 1)
        m *= stride
        x = xp.reshape(x, (*lead, k, *mid, m, *rest))
    if m <= size:
        x = xp.concat([x, _zeros(x, (*lead, k, *mid, size + 1 - m, *rest))], axis=m_axis)
    else:  # spread past the frame (stride > kernel + 1): only zeros are cut
        x = x[(..., slice(0, size + 1)) + (slice(None),) * len(rest)]
    step, block = math.prod(rest), math.prod(mid) * (size + 1) * math.prod(rest)
    flat = xp.reshape(x, (*lead, k * block))[..., :k * (block - step)]
    total = xp.sum(xp.reshape(flat, (*lead, k, block - step)), axis=k_axis)
    total = xp.concat([total, _zeros(total, (*lead, step))], axis=-1)  # the step cut off the end
    return xp.reshape(total, (*lead, *mid, size + 1, *rest))


def col2im(cols, kernel, stride, size):
    """The transpose of :func:`windows`: ``cols`` (N, kh*kw, C, OH, OW) holds ``kh*kw`` pieces in the same
    order, and the result (N, C, H, W) holds at each pixel the sum of the pieces' values that came from it.

    The ``kw`` pieces of each kernel row are moved to their column offsets and summed, then the ``kh``
    rows to their row offsets (:func:`_shift_add`): no scatter, no writes into an array, and the same
    operations for any kernel. When the windows tile the image exactly (stride == kernel, as pooling does
    by default) no pixel is in two windows, and the pieces are interleaved by one reshape instead.
    """
    xp = array_namespace(cols)
    (kh, kw), (sh, sw), (h, w) = kernel, stride, size
    n, _, c, oh, ow = cols.shape
    cols = xp.reshape(cols, (n, kh, kw, c, oh, ow))
    if (sh, sw) == (kh, kw):
        # (N, kh, kw, C, OH, OW) -> (N, C, OH, kh, OW, kw) -> (N, C, OH*kh, OW*kw): window (p, q) back in place
        tiled = xp.reshape(xp.permute_dims(cols, (0, 3, 4, 1, 5, 2)), (n, c, oh * kh, ow * kw))
        return _pad_sides(tiled, 0, h - oh * kh, 0, w - ow * kw)  # rows and columns no window reached
    rows = _shift_add(cols, 2, 5, sw, w)  # (N, kh, C, OH, W + 1): each kernel row's pieces at their columns
    image = _shift_add(rows, 1, 3, sh, h)  # (N, C, H + 1, W + 1): the kernel rows at their rows
    return image[:, :, :h, :w]


# The most numbers the generic path's columns hold at once (256 MiB in float32): a bound on the device's
# memory, not a speed tuning. On a GPU every chunk costs the same kernel launches again, so a batch is cut
# only where its columns would take too much memory: Conv2D's backward holds about 4.5 times the columns
# at its peak (forward's columns, their gradient and col2im's copies: measured on array-api-strict), so
# ~1.1 GiB here. The MNIST preset's second convolution is cut from 405 samples on, where each chunk's
# products are large enough that the launches do not count.
IM2COL_MEMORY_BUDGET = 2**26


def samples_within(budget: int, sample_elements: int, batch: int) -> int:
    """How many samples of ``sample_elements`` numbers each fit in ``budget`` numbers: at least one, at most
    the ``batch``."""
    return max(1, min(batch, budget // sample_elements))


def im2col_chunk(x, sample_elements: int) -> int:
    """How many samples of ``x`` (N, C, H, W) a convolution builds the columns of at once, each sample's
    ``sample_elements`` numbers: the whole batch, unless that passes :data:`IM2COL_MEMORY_BUDGET`."""
    return samples_within(IM2COL_MEMORY_BUDGET, sample_elements, x.shape[0])


def fast_im2col_chunk(x, sample_elements: int) -> int:
    """:func:`im2col_chunk`, by the backend's own rule where it has one (NumPy, and torch on the CPU: chunks
    that stay in the cache); a rule that answers ``None`` leaves the case to the generic one."""
    fast = backend.routine(array_namespace(x), "im2col_chunk")
    chunk = fast(x, sample_elements) if fast is not None else None
    return im2col_chunk(x, sample_elements) if chunk is None else chunk


def chunk_bounds(batch: int, step: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of ``step`` samples; the last one stops at the batch's end, never past
    it (the standard leaves a slice's stop past the end unspecified, and array-api-strict refuses it)."""
    return [(s, min(s + step, batch)) for s in range(0, batch, step)]


def fast_im2col(x, kernel, stride, out):
    """:func:`im2col`, by the backend's own routine where it has one (NumPy: a strided view, one copy)."""
    fast = backend.routine(array_namespace(x), "im2col")
    return (fast or im2col)(x, kernel, stride, out)


def fast_col2im(cols, kernel, stride, size):
    """:func:`col2im`, by the backend's own routine where it has one (NumPy: slice-adds into one buffer)."""
    fast = backend.routine(array_namespace(cols), "col2im")
    return (fast or col2im)(cols, kernel, stride, size)


def check_image(layer, shape, channels=None) -> tuple:
    """``shape`` (with the batch axis) as a tuple if it is an NCHW image of ``channels`` channels (any number
    where ``None``), else a ``ValueError`` that names ``layer``."""
    shape = tuple(shape)
    if len(shape) != 4 or (channels is not None and shape[1] != channels):
        want = f"(batch, {channels}, height, width)" if channels is not None else "(batch, channels, height, width)"
        hint = " (NCHW: add a Reshape((1, 28, 28)) first for flat MNIST rows)" if len(shape) == 2 else ""
        raise ValueError(f"{layer!r} expects input of shape {want}, got {shape}{hint}")
    return shape


def output_hw(layer, shape, kernel, stride, padding=(0, 0)) -> tuple[int, int]:
    """``(OH, OW)``: how many windows fit on an image of ``shape`` (N, C, H, W); a ``ValueError`` if none does."""
    h, w = shape[2], shape[3]
    oh, ow = (output_size(s, k, st, p) for s, k, st, p in zip((h, w), kernel, stride, padding))
    if oh < 1 or ow < 1:
        raise ValueError(f"{layer!r}: the input's {h}x{w} pixels (padded by {padding[0]}x{padding[1]}) are "
                         f"smaller than the {kernel[0]}x{kernel[1]} kernel; use a smaller kernel or more padding")
    return oh, ow
