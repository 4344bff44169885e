"""Devices and array backends.

This is the one package of xpnet that knows array libraries by name. Everything else asks it for a
:class:`Device` and then works through the Array API namespace ``device.xp`` (or the namespace of
the arrays it is handed), so the same math runs on NumPy, CuPy, PyTorch, JAX and array-api-strict.
Each library has one private module here (``_numpy``, ``_cupy``, ``_torch``, ``_strict``, ``_jax``)
holding all that is specific to it; this file dispatches on the backend's name through ``_LIBS``.

    >>> import xpnet
    >>> dev = xpnet.device("auto")        # CUDA when CuPy sees a GPU, else the CPU (and says why)
    >>> x = dev.asarray([[1.0, 2.0]])      # host data onto the device, float32 by default
    >>> xpnet.to_numpy(x * 2)              # and back to the host as NumPy
    array([[2., 4.]], dtype=float32)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from . import _cupy, _jax, _numpy, _strict, _torch

log = logging.getLogger("xpnet")

# One module per library, in the order `xpnet info` lists them; each holds all that is specific to it.
_LIBS = {lib.NAME: lib for lib in (_numpy, _cupy, _torch, _strict, _jax)}
BACKENDS = tuple(_LIBS)
_DEFAULT_BACKEND = {"cpu": "numpy", "cuda": "cupy"}
_KINDS = {name: lib.KINDS for name, lib in _LIBS.items()}
_ALIASES = {"strict": "array-api-strict", "pytorch": "torch", "jax-numpy": "jax", "jnp": "jax"}
_SPEC = re.compile(r"^(cpu|cuda|gpu)(?::(\d+))?$")
_ACCEPTED = "'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...; 'gpu' and 'gpu:N' are accepted too)"
_CUDA_FIX = ("Fix: install CuPy for your CUDA driver with `pip install 'xpnet[cuda12]'` "
             "(or 'xpnet[cuda13]'), or run on the CPU with `--device cpu` / XPNET_DEVICE=cpu.")


_NO_CONTEXT = contextlib.nullcontext()  # reusable and reentrant: no object per call on the per-sample path


class DeviceOutOfMemoryError(MemoryError):
    """The device ran out of memory; the message says what overflowed (the data upload, a training batch,
    an inference batch even at size 1) and what to do."""


class DeviceUnavailableError(RuntimeError):
    """The device that was asked for explicitly cannot be used here (the message says why and how to fix it)."""


@dataclass(frozen=True)
class Device:
    """Where arrays live and which library computes on them.

    ``kind`` is ``"cpu"`` or ``"cuda"``, ``index`` the CUDA ordinal (0 on the CPU), ``backend`` one of
    :data:`BACKENDS`, ``xp`` the Array API namespace and ``native`` the library's own device object
    (what its ``device=`` keyword takes). Make one with :func:`device`; compare them with ``==``.
    """

    kind: str
    index: int
    backend: str
    xp: Any = field(compare=False, repr=False)
    native: Any = field(compare=False, repr=False)
    name: str = ""  # tells apart devices of one backend that share kind and index (array-api-strict's)

    def __str__(self) -> str:
        where = self.kind if self.kind == "cpu" else f"cuda:{self.index}"
        extra = f", {self.name}" if self.name else ""
        return f"{where} ({self.backend}{extra})"

    def dtype(self, name: str):
        """The namespace's dtype object for a name such as ``"float32"``."""
        try:
            dt = getattr(self.xp, name)
        except AttributeError:
            raise ValueError(f"unknown dtype {name!r}: use 'float32' or 'float64'") from None
        self._check_dtype(name)
        return dt

    def _check_dtype(self, name: str) -> None:
        check = getattr(_LIBS[self.backend], "check_dtype", None)
        if check is not None:
            check(name)  # JAX without 64-bit mode would silently compute float64 in float32

    def asarray(self, data, dtype: str | None = "float32", *, c_order: bool = False):
        """Put ``data`` (NumPy array, nested lists, or an array of this backend) on this device.

        Host data is cast on the host first, so the device gets exactly the bits NumPy computed (that is
        what makes a seed give identical weights everywhere). Pass ``dtype=None`` to keep the data's own.
        ``c_order=True`` lays host data out row-major (a copy if it was not), as weights should be: a
        transposed ``(784, 200)`` weight loaded as ``W.T`` made every in-place SGD update walk it
        against the gradient's layout, and a per-sample ``fit`` ran 2x slower.
        """
        xp = self.xp
        if is_array(data) and not array_api_compat.is_numpy_array(data):
            if device_of(data) == self:
                return data if dtype is None else xp.astype(data, self.dtype(dtype), copy=False)
            data = to_numpy(data)
        host = np.asarray(data, order="C" if c_order else None)
        if dtype is not None:
            host = host.astype(dtype, copy=False)
            self._check_dtype(host.dtype.name)
        return _LIBS[self.backend].asarray(xp, host, self.native)

    def synchronize(self) -> None:
        """Wait until every kernel queued on this device has finished (a no-op on the CPU)."""
        synchronize(self)

    def __reduce__(self):
        # By description, not by value: ``xp`` is a module, which pickle cannot hold. scikit-learn's
        # clone and joblib pickle an estimator's device= argument.
        return _revive, (self.kind, self.index, self.backend, self.name)

    def context(self):
        """A context manager under which this device is the current one, restored on exit.

        CuPy allocates and launches on the *current* CUDA device whatever ``device=`` says (compat #337)
        and refuses arrays of another device, so everything a ``cuda:N`` model does runs under
        ``with model.device.context():`` (``fit``, ``evaluate``, ``predict`` and the tutorial class enter
        it themselves). It is ``cupy.cuda.Device(N)`` for CuPy, ``torch.cuda.device(N)`` for torch on
        CUDA, and does nothing elsewhere. Nothing global changes: another thread or model is unaffected.
        """
        enter = getattr(_LIBS[self.backend], "context", None)
        return _NO_CONTEXT if enter is None else enter(self)


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


def _cuda_status() -> tuple[int, str]:
    """Return (number of CUDA devices CuPy can use, why none when it is 0)."""
    return _cupy.cuda_status()


def _torch_cuda_status() -> tuple[int, str]:
    return _torch.cuda_status()


def _probe(backend: str) -> tuple[int, str]:
    # Through the two names above for CuPy and torch, which tests monkeypatch (and cli.py calls).
    probes = {"cupy": _cuda_status, "torch": _torch_cuda_status}
    return probes.get(backend, _LIBS[backend].cuda_status)()


def cuda_devices() -> str:
    """One line for ``xpnet info``: the CUDA devices CuPy can use with their names, or why there are none."""
    count, why = _cuda_status()
    if count:
        return ", ".join(f"cuda:{i} {n}" for i, n in enumerate(_cupy.device_names(count)))
    reasons = [f"CuPy: {why}"]
    try:
        tcount, twhy = _torch_cuda_status()
        if tcount:
            return f"{tcount} seen by PyTorch only ({why}); use --backend torch"
        reasons.append(twhy)
    except ImportError:
        pass
    return "none (" + "; ".join(reasons) + ")"


def device(spec: "str | Device | None" = None, backend: str | None = None) -> Device:
    """Resolve a device spec once, into a :class:`Device`.

    ``spec`` is ``"auto"`` (the default, also read from the environment variable ``XPNET_DEVICE``),
    ``"cpu"``, ``"cuda"`` (= ``"cuda:0"``) or ``"cuda:N"``; ``"gpu"``/``"gpu:N"`` mean the same as
    ``"cuda"``/``"cuda:N"``. ``auto`` takes CUDA when a GPU can be used
    and otherwise the CPU, and logs one line saying which and why. An explicit CUDA device that cannot
    be had raises :class:`DeviceUnavailableError` naming the cause and the fix; a malformed spec raises
    ``ValueError``.

    ``backend`` (default: ``XPNET_BACKEND``, else NumPy on the CPU and CuPy on CUDA) picks the library:
    ``"numpy"`` (cpu), ``"cupy"`` (cuda), ``"torch"`` (cpu or cuda), ``"array-api-strict"`` (cpu; it
    checks that code sticks to the standard), ``"jax"`` (cpu, or cuda with a CUDA build of jaxlib).
    """
    if isinstance(spec, Device):
        if backend is not None and backend != spec.backend:
            raise ValueError(f"device {spec} uses backend {spec.backend!r}, not {backend!r}")
        return spec
    spec_from = backend_from = None
    if spec is None:
        spec, spec_from = os.environ.get("XPNET_DEVICE", "") or "auto", "$XPNET_DEVICE"
    if backend is None:
        backend, backend_from = os.environ.get("XPNET_BACKEND", "") or None, "$XPNET_BACKEND"
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string such as {_ACCEPTED}, or an xpnet.Device; got {spec!r}")
    backend = parse_backend(backend, backend_from)
    parsed = parse_device(spec, spec_from)
    if parsed is None:
        return _auto(backend)
    kind, index = parsed
    backend = backend or _DEFAULT_BACKEND[kind]
    if kind not in _KINDS[backend]:
        able = " or ".join(_KINDS[backend])
        raise ValueError(f"backend {backend!r} cannot run on {kind!r}: it runs on {able}")
    return _make(kind, index, backend)


def parse_device(spec: str, source: str | None = None) -> "tuple[str, int] | None":
    """``("cpu", 0)`` or ``("cuda", N)`` for a device spec, ``None`` for ``"auto"``; ``ValueError`` if bad.

    ``gpu`` and ``gpu:N`` are spellings of ``cuda`` and ``cuda:N``. ``source`` (a flag or an environment
    variable) is named in the error, so a user knows where the bad value came from.
    """
    where = f" (from {source})" if source else ""
    text = spec.strip().lower()
    if text == "auto":
        return None
    m = _SPEC.match(text)
    if m is None:
        raise ValueError(f"bad device {spec!r}{where}: use {_ACCEPTED}")
    kind = "cuda" if m.group(1) == "gpu" else m.group(1)
    if kind == "cpu" and m.group(2) not in (None, "0"):
        raise ValueError(f"bad device {spec!r}{where}: the CPU takes no index; use {_ACCEPTED}")
    return kind, int(m.group(2) or 0)


def parse_backend(name: str | None, source: str | None = None) -> str | None:
    """The canonical name of a backend (``"strict"`` -> ``"array-api-strict"``); ``ValueError`` if unknown."""
    if name is None:
        return None
    backend = name.strip().lower().replace("_", "-")
    backend = _ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        where = f" (from {source})" if source else ""
        raise ValueError(f"unknown backend {name!r}{where}: choose one of {', '.join(BACKENDS)}")
    return backend


def _auto(backend: str | None) -> Device:
    if backend is not None:
        _require(backend)
    if backend is None or "cuda" in _KINDS[backend]:
        count, why = _probe(backend or "cupy")
        if count:
            dev = _make("cuda", 0, backend or "cupy")
            log.info("xpnet: device auto -> %s", dev)
            return dev
        if backend is not None and "cpu" not in _KINDS[backend]:
            raise DeviceUnavailableError(f"backend {backend!r} needs a CUDA GPU, but {why}. {_fix(backend, why)}")
        log.info("xpnet: device auto -> cpu, because %s", why)
    return _make("cpu", 0, backend or "numpy")


def _fix(backend: str, why) -> str:
    # A probe's reason may carry the fix for its own cause (CuPy's: no driver, an old one, no cuBLAS...).
    return getattr(why, "fix", None) or getattr(_LIBS[backend], "CUDA_FIX", _CUDA_FIX)


def _require(backend: str) -> None:
    """Raise :class:`DeviceUnavailableError` with the fix when ``backend``'s library cannot be imported."""
    why = _LIBS[backend].missing()
    if why is not None:
        raise DeviceUnavailableError(f"backend {backend!r} cannot be used: {why}")


def _make(kind: str, index: int, backend: str) -> Device:
    _require(backend)
    lib = _LIBS[backend]
    if kind == "cuda":
        # Ask whether CUDA can be had before importing the namespace, which fails without CuPy.
        count, why = _probe(backend)
        if count == 0:
            raise DeviceUnavailableError(f"cuda:{index} was requested but {why}. {_fix(backend, why)}")
        if index >= count:
            raise DeviceUnavailableError(
                f"cuda:{index} was requested but this machine has {count} CUDA device(s), "
                f"numbered 0 to {count - 1}. Fix: pass --device cuda:0 ... cuda:{count - 1}, or --device cpu.")
    xp = lib.namespace()
    return Device(kind, index, backend, xp, lib.native(kind, index, xp))


def _revive(kind: str, index: int, backend: str, name: str) -> Device:
    """The device a pickled :class:`Device` described, looked up again in this process."""
    made = _make(kind, index, backend)
    if not name:
        return made
    for native in made.xp.__array_namespace_info__().devices():
        found = device_of(made.xp.asarray(0.0, device=native))
        if found.name == name:
            return found
    raise DeviceUnavailableError(f"the pickled device {kind}:{index} ({backend}, {name}) does not exist here")


def device_of(x) -> Device:
    """The :class:`Device` an array lives on (the data-follows-the-array direction)."""
    xp = array_api_compat.array_namespace(x)
    native = array_api_compat.device(x)
    for name, lib in _LIBS.items():
        if lib.owns(xp):
            kind, index, label = lib.locate(x, native)
            return Device(kind, index, name, xp, native, label)
    raise TypeError(f"xpnet does not support arrays of type {type(x).__module__}.{type(x).__name__}")


def to_numpy(x) -> np.ndarray:
    """Bring an array of any backend (or a scalar) back to the host as a NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (np.generic, int, float, bool, list, tuple)):
        # NumPy reductions return NumPy scalars rather than 0-D arrays (numpy #26850).
        return np.asarray(x)
    for lib in _LIBS.values():
        if hasattr(lib, "to_numpy") and lib.is_array(x):
            return lib.to_numpy(x)
    return np.from_dlpack(x, device="cpu")


def is_host_array(x) -> bool:
    """Whether ``x`` is a NumPy array: host memory that MPI (or any C library) reads and writes in place."""
    return isinstance(x, np.ndarray)


def cuda_count(backend: str) -> int:
    """How many CUDA devices ``backend`` can use here (0 when none, or for a CPU-only library)."""
    return _probe(backend)[0]


def nccl_allreduce(dev: Device, rank: int, size: int, share):
    """An in-place sum over ranks of a flat array on ``dev`` through NCCL (CuPy on CUDA), or ``None``
    where the backend has no NCCL path (see ``_cupy.nccl_allreduce``)."""
    make = getattr(_LIBS[dev.backend], "nccl_allreduce", None)
    return None if make is None or dev.kind != "cuda" else make(dev, rank, size, share)


def synchronize(dev: Device) -> None:
    """Block until ``dev`` has finished its queued work (for honest timings; a no-op for NumPy)."""
    sync = getattr(_LIBS[dev.backend], "synchronize", None)
    if sync is not None:
        sync(dev)


def host_rng(seed=None) -> np.random.Generator:
    """The host random generator that every random draw of xpnet comes from (init, shuffling, dropout)."""
    return np.random.default_rng(seed)


def random_uniform(dev: Device, key: int, counter: int, shape, dtype: str = "float32"):
    """Uniform numbers in ``[0, 1)`` of ``shape``, drawn on ``dev`` by its own library's generator.

    Counter-based: draw ``counter`` of the stream ``key`` depends on ``(key, counter)`` alone, so a
    layer's whole random state is two ints, which a checkpoint saves and restores exactly. The pair is
    mixed on the host by NumPy's ``SeedSequence`` (a hash, no transfer) into the seed of each library's
    generator. The same ``(key, counter)`` gives the same numbers on one backend; backends differ (NumPy
    and array-api-strict agree, since strict draws through NumPy).
    """
    for name, value in (("key", key), ("counter", counter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"random_uniform: {name} must be a non-negative int, got {value!r}")
    dev.dtype(dtype)  # refuses an unknown name, and float64 on JAX without its 64-bit mode
    seed = np.random.SeedSequence([key, counter])
    return _LIBS[dev.backend].random_uniform(dev.xp, dev.native, seed, tuple(shape), dtype)


_ROUTINES: dict = {}
# What a backend module may define in its own way: Dense's one-sample ``x.T @ dy`` (layers/core.py) and
# the convolution layers' windows (layers/conv.py)
ROUTINES = ("matmul_tn", "im2col", "col2im")


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
        lib = next((lib for lib in _LIBS.values() if lib.owns(xp)), None)
        found = _ROUTINES[key] = getattr(lib, name, None)
    return found


def available_backends() -> dict[str, str]:
    """Map each backend to ``"ok"`` or the reason it cannot be used here (for ``xpnet info``)."""
    return {name: lib.status() for name, lib in _LIBS.items()}


def memory_pool_bytes(dev: Device) -> int | None:
    """Peak bytes held by the GPU memory pool of ``dev`` (``None`` on the CPU)."""
    if dev.kind != "cuda":
        return None
    with dev.context():  # the pools are per device, and CuPy's calls act on the current one
        return _LIBS[dev.backend].memory_pool_bytes(dev)


def free_memory_pool(dev: Device) -> None:
    """Give cached GPU memory back to the driver (after an out-of-memory error, say)."""
    if dev.kind == "cuda":
        with dev.context():
            _LIBS[dev.backend].free_memory_pool(dev)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error of any backend (not one xpnet has already explained)."""
    if isinstance(exc, DeviceOutOfMemoryError):
        return False
    name = type(exc).__name__
    return name in ("OutOfMemoryError", "MemoryError") or "out of memory" in str(exc).lower()
