"""What one training step asks of the device: every operation and every host sync, counted.

array-api-strict runs the same generic Array API lines that CuPy runs (it has no backend routines of its
own), so counting its calls counts the GPU's kernel launches, to within what one call launches there.
:func:`counting` wraps, for the duration of a ``with`` block, every namespace function of the standard
(``xp.matmul``, ``xp.linalg.*``, ...) and every array operator or method that makes or writes an array
(``a + b``, ``a += b``, ``a[i]``, ``a[i] = v``, ``a.T``, ``a.mT``, ``a.to_device``, iterating a 1-D array):
each call counts once, and what a counted call does inside (strict's ``unstack`` indexes its input, say) is
not counted again. Functions that only answer questions about dtypes and shapes (``isdtype``, ``finfo``,
``result_type``, ...) launch nothing and are not counted.

It also counts host syncs: the ways an array reaches the host (``float(a)``, ``bool(a)``, ``int(a)``,
``a.__index__``, DLPack, ``np.asarray(a)``, ...). On CUDA each one copies to the host and waits for the
device.

The same counting wraps the other backends, ``counting("cupy")``, ``"torch"`` or ``"numpy"``: the standard's
names in their array-api-compat namespace and the operators of their array class (``cupy.ndarray``, a
Python class since CuPy 14; ``torch.Tensor``). NumPy's ``ndarray`` is a C type that takes no new methods,
so under ``counting("numpy")`` every array the namespace or the NumPy backend hands out is a view of
:class:`CountedArray`, a subclass that does; :func:`count_network` builds its model inside the block for
that reason. A backend's own routines (:data:`xpnet.backend.ROUTINES`, its own ``asarray`` or
``random_uniform``) count once each where they run, as a namespace call does: where one runs, the count is
that backend's, not the generic path's (NumPy's strided ``im2col``, say).

Used by tests/test_op_counts.py, tests/test_gpu_paths.py and benchmarks/op_count.py. The counting needs
array-api-strict (for the standard's names); :func:`count_network` drives an xpnet model.
"""

from __future__ import annotations

import collections
import contextlib
import functools

import numpy as np

# The ways an array reaches the host; on CUDA each one is a transfer and a sync. Each backend's array class
# adds its own (EXTRA_DOORS).
HOST_DOORS = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__dlpack__", "__array__",
              "__buffer__", "tolist", "item")
EXTRA_DOORS = {"torch": ("numpy",), "cupy": ("get",)}

# Array methods that make or write an array: every operator (reflected and in-place ones too), indexing
# and the device move. Properties (.T, .mT) are in ARRAY_PROPERTIES.
_BINARY = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift",
           "rshift")
ARRAY_OPS = (tuple(f"__{p}{op}__" for op in _BINARY for p in ("", "r", "i"))
             + ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__pos__", "__abs__",
                "__invert__", "__getitem__", "__setitem__", "__iter__", "to_device"))
ARRAY_PROPERTIES = ("T", "mT")

# Namespace functions that look at dtypes, shapes or flags only: nothing runs on the device.
METADATA = frozenset({"can_cast", "finfo", "iinfo", "isdtype", "result_type", "broadcast_shapes",
                      "__array_namespace_info__", "get_array_api_strict_flags", "set_array_api_strict_flags",
                      "reset_array_api_strict_flags"})

# The backend hooks that make arrays (xpnet.backend.protocol.Backend): counted where a backend defines its
# own. ``im2col_chunk`` only answers a size, so it is not among them.
HOOKS = ("asarray", "random_uniform", "matmul_tn", "im2col", "col2im")
BACKENDS = ("array-api-strict", "numpy", "torch", "cupy")


class CountedArray(np.ndarray):
    """A NumPy array whose class can take counting methods (``numpy.ndarray``'s cannot): under
    ``counting("numpy")`` the namespace and the NumPy backend hand out views of it. Outside, a plain array."""


class Tally:
    """What a ``with counting()`` block saw: ``ops`` (a Counter by name: ``"matmul"``, ``"Array.__add__"``),
    ``syncs`` (the host doors taken, in order) and, where :meth:`phase` marked them, ``phases`` (the
    operations of each named part, ``{"forward": 12, ...}``). Nothing is counted while ``paused``."""

    def __init__(self, cast=None):
        self.ops = collections.Counter()
        self.syncs = []
        self.phases = {}
        self.paused = False
        self._depth = 0  # > 0 inside a counted call: what it calls is its own business
        self._cast = cast or (lambda out: out)

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @contextlib.contextmanager
    def phase(self, name: str):
        """Add the operations counted inside the ``with`` block to ``phases[name]``."""
        before = self.total
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0) + self.total - before

    def _counted(self, fn, name, *, hook=False):
        # A hook that answers None (matmul_tn for more than one row) ran nothing: the generic lines will.
        @functools.wraps(fn)
        def counted(*args, **kwargs):
            outer = self._depth == 0 and not self.paused
            if outer and not hook:
                self.ops[name] += 1
            self._depth += 1
            try:
                out = fn(*args, **kwargs)
            finally:
                self._depth -= 1
            if outer and hook and out is not None:
                self.ops[name] += 1
            return self._cast(out)
        return counted

    def _door(self, fn, name):
        # Counted inside an operation too: a function that reads back syncs all the same.
        @functools.wraps(fn)
        def door(*args, **kwargs):
            if not self.paused:
                self.syncs.append(name)
            return fn(*args, **kwargs)
        return door


def _as_counted(out):
    """What the NumPy namespace returned, with its arrays (and NumPy scalars, which strict would give as
    0-D arrays) as views of :class:`CountedArray`."""
    if type(out) is np.ndarray:
        return out.view(CountedArray)
    if isinstance(out, np.generic):
        return np.asarray(out).view(CountedArray)
    if isinstance(out, (tuple, list)) and any(type(o) is np.ndarray for o in out):
        return type(out)(_as_counted(o) for o in out)
    return out


def _target(backend: str):
    """``(namespaces as (prefix, module), the array class, its label in op names, cast)`` of a backend."""
    import importlib

    if backend == "array-api-strict":
        import array_api_strict as xp
        from array_api_strict._array_object import Array

        return _namespaces(xp), Array, "Array", None
    if backend not in BACKENDS:
        raise ValueError(f"opcount: unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    xp = importlib.import_module(f"array_api_compat.{backend}")
    if backend == "numpy":
        return _namespaces(xp), CountedArray, "ndarray", _as_counted
    if backend == "torch":
        import torch

        return _namespaces(xp), torch.Tensor, "Tensor", None
    import cupy

    return _namespaces(xp), cupy.ndarray, "ndarray", None


def _namespaces(xp):
    """(prefix, module, the standard's names there) for the main namespace and its extensions."""
    import array_api_strict as standard

    out = []
    for sub in ("", "linalg", "fft"):
        ns, names = (xp, standard) if not sub else (getattr(xp, sub, None), getattr(standard, sub, None))
        if ns is not None and names is not None:
            out.append((f"{sub}." if sub else "", ns, names.__all__))
    return out


_MISSING = object()


class _Patches:
    def __init__(self):
        self.undo = []

    def set(self, owner, name, value):
        self.undo.append((owner, name, vars(owner).get(name, _MISSING)))  # inherited: deleted again
        setattr(owner, name, value)

    def restore(self):
        for owner, name, value in reversed(self.undo):
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def _lookup(cls, name):
    """The attribute ``name`` of ``cls`` as its class or a base (not ``object``) defines it, else None."""
    return next((vars(c)[name] for c in cls.__mro__ if c is not object and name in vars(c)), None)


@contextlib.contextmanager
def host_reads(backend: str = "array-api-strict"):
    """``with host_reads() as seen:`` ``seen`` is a list that gets one entry per read-back of an array,
    naming the door it took (no operation counting: cheap enough for a whole ``fit``). NumPy's arrays are
    seen only as views of :class:`CountedArray`, which only :func:`counting` hands out."""
    with _patched(backend, ops=False) as tally:
        yield tally.syncs


@contextlib.contextmanager
def counting(backend: str = "array-api-strict"):
    """``with counting() as tally:`` every namespace call and array operation of ``backend`` in the block is
    counted in ``tally.ops`` and every host read-back in ``tally.syncs`` (see the module docstring)."""
    with _patched(backend, ops=True) as tally:
        yield tally


@contextlib.contextmanager
def _patched(backend: str, ops: bool):
    from xpnet.backend import LIBRARIES, arrays

    namespaces, cls, label, cast = _target(backend)
    tally, patches = Tally(cast if ops else None), _Patches()
    routines = dict(arrays._ROUTINES)
    try:
        for name in HOST_DOORS + EXTRA_DOORS.get(backend, ()):
            found = _lookup(cls, name)
            if found is not None:
                patches.set(cls, name, tally._door(found, name))
        if ops:
            _patch_ops(tally, patches, cls, label, namespaces)
            lib = LIBRARIES[backend]
            for name in HOOKS:  # set on the instance: the class keeps its own
                if name in vars(type(lib)) and getattr(lib, name) is not None:
                    patches.set(lib, name, tally._counted(getattr(lib, name), name, hook=True))
            arrays._ROUTINES.clear()  # routine() caches what it found: let it find the counted hooks
        yield tally
    finally:
        patches.restore()
        arrays._ROUTINES.clear()
        arrays._ROUTINES.update(routines)


def _patch_ops(tally, patches, cls, label, namespaces):
    for name in ARRAY_OPS:
        found = _lookup(cls, name)
        if found is not None:
            patches.set(cls, name, tally._counted(found, f"{label}.{name}"))
    for name in ARRAY_PROPERTIES:
        found = _lookup(cls, name)
        if found is not None:
            getter = functools.partial(lambda desc, self: desc.__get__(self, type(self)), found)
            patches.set(cls, name, property(tally._counted(getter, f"{label}.{name}")))
    for prefix, ns, names in namespaces:
        for name in names:
            fn = vars(ns).get(name)
            if name not in METADATA and callable(fn) and not isinstance(fn, type):
                patches.set(ns, name, tally._counted(fn, prefix + name))


def count_step(model, loss, optimizer, X, y, *, warmup: int = 1, tally: Tally | None = None) -> Tally:
    """The tally of one training step of an xpnet ``model`` on (X, y) (arrays on the model's device):
    ``forward -> loss -> backward -> optimizer.step``, as ``fit``'s loop runs them on a batch it has
    gathered, after ``warmup`` uncounted steps on the same batch (the optimizer's state and whatever else
    is built lazily exist by then). ``phases`` splits the count into forward, loss (its forward and
    backward), backward and step. ``tally``: a paused one from an enclosing ``counting()`` block (where
    the model was built, as NumPy needs); by default the step is counted in a block of its own."""
    params, grads = model.parameters(), model.gradients()

    def step(t):
        with t.phase("forward"):
            out = model.forward(X, training=True)
        with t.phase("loss"):
            loss.forward(out, y)
            dy = loss.backward()
        with t.phase("backward"):
            model.backward(dy)
        with t.phase("step"):
            optimizer.step(params, grads)

    with model.device.context():
        if tally is not None:
            tally.paused = True
            for _ in range(warmup):
                step(tally)
            tally.paused = False
            step(tally)
            return tally
        for _ in range(warmup):
            step(Tally())
        with counting(model.device.backend) as counted:
            step(counted)
    return counted


# -- issue 25's networks -------------------------------------------------------------------------------
def mlp_layers():
    """MLP 784-256-10 (ReLU): the small network whose step is all per-layer overhead on a GPU."""
    from xpnet import Dense, ReLU

    return [Dense(784, 256), ReLU(), Dense(256, 10)]


def cnn_preset_layers():
    """``xpnet train --model cnn``'s network for MNIST (flat 784-pixel rows), as the CLI builds it."""
    from xpnet.cli import presets

    preset = presets.PRESETS["cnn"]
    return presets.cnn_network(784, 10, preset["hidden"][0], preset["activation"], preset["loss"],
                               presets.CNN_DROPOUT, False, "mnist")


def gpt_layers():
    """A 2-block GPT (``xpnet.models.gpt``: vocabulary 65, block 32, 2 heads, 16 wide, tied embeddings), its
    windows (batch, T) with T up to 32."""
    from xpnet import models

    return models.gpt(65, 32, 2, 2, 16).layers


NETWORKS = {"mlp": ("MLP 784-256-10", mlp_layers), "cnn": ("MNIST CNN preset", cnn_preset_layers),
            "gpt": ("GPT 2 blocks (65 ids, 16 wide; AdamW: the CLI's, clip 1.0 and decay on matrices)", gpt_layers)}
OPTIMIZERS = {"sgd": "SGD", "adamw": "AdamW"}


def _optimizer(network: str, name: str, options: dict):
    import xpnet
    from xpnet.cli.gpt import gpt_optimizer

    if (network, name) == ("gpt", "adamw") and not options:
        return gpt_optimizer()
    return xpnet.optim.OPTIMIZERS[name](**options)


def count_network(network: str, optimizer: str, batch: int, *, seed: int = 0, backend: str = "array-api-strict",
                  device: str = "cpu", T: int = 16, **options) -> Tally:
    """:func:`count_step` for one of :data:`NETWORKS` with one of :data:`OPTIMIZERS` (default settings, or
    ``options`` for its constructor; the GPT's AdamW is ``xpnet train --model gpt``'s), softmax cross-entropy, on
    ``batch`` random MNIST-shaped rows (the GPT: ``batch`` windows of ``T`` ids and their targets), on ``backend``
    (default array-api-strict, the generic path) and ``device``. The model is built inside the counting block,
    paused (see the module docstring: NumPy's arrays must be views of :class:`CountedArray` from the start)."""
    from threadpoolctl import threadpool_limits  # a dependency of xpnet

    import xpnet

    # The count does not depend on the threads; on a shared machine several BLAS threads per process
    # made a CNN count 8x slower (4.7 s against 0.56 s at batch 30, load 11 on 2 cores).
    with threadpool_limits(1), counting(backend) as tally:
        tally.paused = True
        model = xpnet.Sequential(NETWORKS[network][1](), device=device, backend=backend, seed=seed)
        rng = np.random.default_rng(seed)
        with model.device.context():
            if network == "gpt":
                X, y = (model.device.asarray(rng.integers(0, 65, size=(batch, T)), "int64") for _ in range(2))
            else:
                X = model.device.asarray(rng.random((batch, 784), dtype=np.float32), "float32")
                y = model.device.asarray(rng.integers(0, 10, size=batch), "int64")
        return count_step(model, xpnet.SoftmaxCrossEntropy(), _optimizer(network, optimizer, options), X, y,
                          tally=tally)
