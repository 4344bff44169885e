"""What one training step asks of the device, counted on array-api-strict.

array-api-strict runs the same generic Array API lines that CuPy runs (it has no backend routines of its
own), so counting its calls counts the GPU's kernel launches, to within what one call launches there.
:func:`counting` wraps, for the duration of a ``with`` block, every namespace function (``xp.matmul``,
``xp.linalg.*``, ...) and every array operator or method that makes or writes an array (``a + b``,
``a += b``, ``a[i]``, ``a[i] = v``, ``a.T``, ``a.mT``, ``a.to_device``, iterating a 1-D array): each call
counts once, and what a counted call does inside (strict's ``unstack`` indexes its input, say) is not
counted again. Functions that only answer questions about dtypes and shapes (``isdtype``, ``finfo``,
``result_type``, ...) launch nothing and are not counted.

It also counts host syncs: the ways a strict array reaches the host (``float(a)``, ``bool(a)``,
``int(a)``, ``a.__index__``, DLPack, ``np.asarray(a)``, ...). On CUDA each one copies to the host and
waits for the device.

Used by tests/test_op_counts.py, tests/test_gpu_paths.py and benchmarks/op_count.py. The counting needs
only array-api-strict; :func:`count_step` and :func:`count_network` drive an xpnet model.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect

# The ways an array-api-strict array reaches the host; on CUDA each one is a transfer and a sync.
HOST_DOORS = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__dlpack__", "__array__",
              "__buffer__", "tolist", "item")

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


class Tally:
    """What a ``with counting()`` block saw: ``ops`` (a Counter by name: ``"matmul"``, ``"Array.__add__"``),
    ``syncs`` (the host doors taken, in order) and, where :meth:`phase` marked them, ``phases`` (the
    operations of each named part, ``{"forward": 12, ...}``)."""

    def __init__(self):
        self.ops = collections.Counter()
        self.syncs = []
        self.phases = {}
        self._depth = 0  # > 0 inside a counted call: what it calls is its own business

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

    def _counted(self, fn, name):
        @functools.wraps(fn)
        def counted(*args, **kwargs):
            if self._depth == 0:
                self.ops[name] += 1
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
        return counted

    def _door(self, fn, name):
        # Counted inside an operation too: a function that reads back syncs all the same.
        @functools.wraps(fn)
        def door(*args, **kwargs):
            self.syncs.append(name)
            return fn(*args, **kwargs)
        return door


def _namespaces():
    """(prefix, module) for the main namespace and its extensions."""
    import array_api_strict as xp

    return [("", xp)] + [(f"{sub}.", getattr(xp, sub)) for sub in ("linalg", "fft") if hasattr(xp, sub)]


class _Patches:
    def __init__(self):
        self.undo = []

    def set(self, owner, name, value):
        self.undo.append((owner, name, owner.__dict__[name]))  # only what the owner itself defines
        setattr(owner, name, value)

    def restore(self):
        for owner, name, value in reversed(self.undo):
            setattr(owner, name, value)


@contextlib.contextmanager
def host_reads():
    """``with host_reads() as seen:`` ``seen`` is a list that gets one entry per read-back of a strict
    array, naming the door it took (no operation counting: cheap enough for a whole ``fit``)."""
    with _patched(ops=False) as tally:
        yield tally.syncs


@contextlib.contextmanager
def counting():
    """``with counting() as tally:`` every strict namespace call and array operation in the block is
    counted in ``tally.ops`` and every host read-back in ``tally.syncs`` (see the module docstring)."""
    with _patched(ops=True) as tally:
        yield tally


@contextlib.contextmanager
def _patched(ops: bool):
    from array_api_strict._array_object import Array

    tally, patches = Tally(), _Patches()
    try:
        for name in HOST_DOORS:
            if name in Array.__dict__:
                patches.set(Array, name, tally._door(Array.__dict__[name], name))
        if ops:
            _patch_ops(tally, patches, Array)
        yield tally
    finally:
        patches.restore()


def _patch_ops(tally, patches, Array):
    for name in ARRAY_OPS:
        if name in Array.__dict__:
            patches.set(Array, name, tally._counted(Array.__dict__[name], f"Array.{name}"))
    for name in ARRAY_PROPERTIES:
        prop = Array.__dict__[name]
        patches.set(Array, name, property(tally._counted(prop.fget, f"Array.{name}")))
    for prefix, ns in _namespaces():
        for name in ns.__all__:
            if name not in METADATA and inspect.isfunction(ns.__dict__.get(name)):
                patches.set(ns, name, tally._counted(ns.__dict__[name], prefix + name))


def count_step(model, loss, optimizer, X, y, *, warmup: int = 1) -> Tally:
    """The tally of one training step of an xpnet ``model`` on (X, y) (arrays on the model's device):
    ``forward -> loss -> backward -> optimizer.step``, as ``fit``'s loop runs them on a batch it has
    gathered, after ``warmup`` uncounted steps on the same batch (the optimizer's state and whatever else
    is built lazily exist by then). ``phases`` splits the count into forward, loss (its forward and
    backward), backward and step."""
    params, grads = model.parameters(), model.gradients()

    def step(tally):
        with tally.phase("forward"):
            out = model.forward(X, training=True)
        with tally.phase("loss"):
            loss.forward(out, y)
            dy = loss.backward()
        with tally.phase("backward"):
            model.backward(dy)
        with tally.phase("step"):
            optimizer.step(params, grads)

    with model.device.context():
        for _ in range(warmup):
            step(Tally())
        with counting() as tally:
            step(tally)
    return tally


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


NETWORKS = {"mlp": ("MLP 784-256-10", mlp_layers), "cnn": ("MNIST CNN preset", cnn_preset_layers)}
OPTIMIZERS = {"sgd": "SGD", "adamw": "AdamW"}


def count_network(network: str, optimizer: str, batch: int, *, seed: int = 0, **options) -> Tally:
    """:func:`count_step` for one of :data:`NETWORKS` with one of :data:`OPTIMIZERS` (default settings, or
    ``options`` for its constructor), softmax cross-entropy, on ``batch`` random MNIST-shaped rows, on
    array-api-strict."""
    import numpy as np
    from threadpoolctl import threadpool_limits  # a dependency of xpnet

    import xpnet

    model = xpnet.Sequential(NETWORKS[network][1](), device="cpu", backend="array-api-strict", seed=seed)
    rng = np.random.default_rng(seed)
    X = model.device.asarray(rng.random((batch, 784), dtype=np.float32), "float32")
    y = model.device.asarray(rng.integers(0, 10, size=batch), "int64")
    opt = xpnet.optim.OPTIMIZERS[optimizer](**options)
    # The count does not depend on the threads; on a shared machine several BLAS threads per process
    # made a CNN count 8x slower (4.7 s against 0.56 s at batch 30, load 11 on 2 cores).
    with threadpool_limits(1):
        return count_step(model, xpnet.SoftmaxCrossEntropy(), opt, X, y)
