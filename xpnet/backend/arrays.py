"""Arrays of any backend: their namespace, the way back to NumPy, random numbers and the layer routines."""

from __future__ import annotations

import array_api_compat
import numpy as np

from ..arguments import check_count
from .registry import LIBRARIES, owner


def is_array(x) -> bool:
    return array_api_compat.is_array_api_obj(x)


_NAMESPACES: dict = {}


def namespace(x):
    """``array_namespace(x)`` for one array, looked up once per array type.

    The namespace depends on the array's type only, and ``array_namespace`` costs ~3 us a call: at batch
    1 a training step made ~20 of them. A type it refuses (a Python float) raises its ``TypeError``.
    """
    try:
        return _NAMESPACES[type(x)]
    except KeyError:
        xp = _NAMESPACES[type(x)] = array_api_compat.array_namespace(x)
        return xp


def to_numpy(x) -> np.ndarray:
    """Bring an array of any backend (or a scalar) back to the host as a NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (np.generic, int, float, bool, list, tuple)):
        # NumPy reductions return NumPy scalars rather than 0-D arrays (numpy #26850).
        return np.asarray(x)
    for lib in LIBRARIES.values():
        host = lib.to_numpy(x)
        if host is not None:
            return host
    return np.from_dlpack(x, device="cpu")


def is_host_array(x) -> bool:
    """Whether ``x`` is a NumPy array: host memory that MPI (or any C library) reads and writes in place."""
    return isinstance(x, np.ndarray)


def host_rng(seed=None) -> np.random.Generator:
    """The host random generator that every random draw of xpnet comes from (init, shuffling, dropout)."""
    return np.random.default_rng(seed)


def random_uniform(dev, key: int, counter: int, shape, dtype: str = "float32"):
    """Uniform numbers in ``[0, 1)`` of ``shape`` on ``dev``.

    Counter-based: draw ``counter`` of the stream ``key`` depends on ``(key, counter)`` alone, so a
    layer's whole random state is two ints, which a checkpoint saves and restores exactly. The pair is
    mixed on the host by NumPy's ``SeedSequence`` (a hash, no transfer) into the seed of a generator
    made for this one draw. NumPy, array-api-strict and CuPy draw on the host with NumPy and agree bit for
    bit (CuPy then copies the numbers to the GPU); PyTorch and JAX draw on their device with their own
    generators, so their numbers differ (see :meth:`~.protocol.Backend.random_uniform`).
    """
    for name, value in (("key", key), ("counter", counter)):
        check_count(f"random_uniform: {name}", value, 0, "a non-negative int")
    dev.dtype(dtype)  # refuses an unknown name, and float64 on JAX without its 64-bit mode
    seed = np.random.SeedSequence([key, counter])
    return LIBRARIES[dev.backend].random_uniform(dev.xp, dev.native, seed, tuple(shape), dtype)


_ROUTINES: dict = {}
# What a backend may define in its own way: Dense's products and its SGD step in backward (layers/core.py),
# the convolution layers' windows and how many samples' columns Conv2D builds at once (layers/windows.py), the
# heavy passes of Conv2D, MaxPool2D, ReLU and Dropout (NumPy: on all cores, backend/_numpy_windows.py,
# _numpy_layers.py), the softmax cross-entropy on integer labels (losses.py), Embedding's gradient, a scatter-
# add of rows, which the standard lacks (layers/sequence.py), whether an optimizer steps a model's flat buffer
# at once or array by array (parameters.py), and the transformer's LayerNorm, GELU and attention softmax in
# fewer passes (layers/sequence.py, activations.py, attention.py)
ROUTINES = ("matmul", "matmul_tn", "sgd_dense", "im2col", "col2im", "im2col_chunk", "conv2d_forward",
            "conv2d_backward", "max_pool2d", "max_pool2d_backward", "relu", "relu_backward", "dropout",
            "dropout_backward", "softmax_cross_entropy", "softmax_cross_entropy_backward", "scatter_add",
            "step_at_once", "layer_norm", "layer_norm_backward", "gelu", "gelu_backward", "attention_softmax",
            "attention_softmax_backward")


def routine(xp, name: str):
    """The backend's own version of the layer routine ``name`` (one of :data:`ROUTINES`) for arrays of the
    namespace ``xp``, or ``None`` where it has none and the caller runs its generic Array API lines.

    The signatures are those of the generic code in :mod:`xpnet.layers`; each backend version is tested
    against it (tests/test_backend.py, tests/test_conv.py). A version may also return ``None`` for a case
    it does not take (``matmul_tn`` for more than one row): the generic lines run then too.
    """
    key = (id(xp), name)
    found = _ROUTINES.get(key, _ROUTINES)  # the dict itself marks "not looked up yet" (None is an answer)
    if found is _ROUTINES:
        if name not in ROUTINES:
            raise ValueError(f"routine: unknown routine {name!r}; one of {', '.join(ROUTINES)}")
        lib = owner(xp)
        found = _ROUTINES[key] = None if lib is None else getattr(lib, name)
    return found


def dispatch(name: str, generic, *args):
    """``generic(*args)``, or the backend's own routine ``name`` for the namespace of ``args[0]`` where it has
    one and that routine takes the case (it answers ``None`` for a case it leaves to the generic lines)."""
    fast = routine(namespace(args[0]), name)
    out = None if fast is None else fast(*args)
    return generic(*args) if out is None else out
