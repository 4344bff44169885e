"""The :class:`Device` and how one is chosen: the user's spec parsed once, ``auto``, and the probes' answers.

A spec is ``"auto"``, ``"cpu"``, ``"cuda"``/``"cuda:N"`` (or ``"gpu"``/``"gpu:N"``); a backend is one of
:data:`~.registry.BACKENDS`. Whatever cannot be had is refused here, with the cause and the fix.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from .arrays import is_array, to_numpy
from .protocol import Reason
from .registry import BACKENDS, LIBRARIES, owner

log = logging.getLogger("xpnet")

_DEFAULT_BACKEND = {"cpu": "numpy", "cuda": "cupy"}
_ALIASES = {"strict": "array-api-strict", "pytorch": "torch", "jax-numpy": "jax", "jnp": "jax"}
_SPEC = re.compile(r"^(cpu|cuda|gpu)(?::(\d+))?$")
_ACCEPTED = "'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...; 'gpu' and 'gpu:N' are accepted too)"


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
        LIBRARIES[self.backend].check_dtype(name)  # JAX without 64-bit mode would compute float64 in float32
        return dt

    def asarray(self, data, dtype: str | None = "float32", *, c_order: bool = False):
        """Put ``data`` (NumPy array, nested lists, or an array of this backend) on this device.

        Host data is cast on the host first, so the device gets exactly the bits NumPy computed (that is
        what makes a seed give identical weights everywhere). Pass ``dtype=None`` to keep the data's own.
        ``c_order=True`` lays host data out row-major (a copy if it was not), as weights should be: a
        transposed ``(784, 200)`` weight loaded as ``W.T`` made every in-place SGD update walk it
        against the gradient's layout, and a per-sample ``fit`` ran 2x slower.
        """
        xp = self.xp
        lib = LIBRARIES[self.backend]
        if is_array(data) and not array_api_compat.is_numpy_array(data):
            if device_of(data) == self:
                return data if dtype is None else xp.astype(data, self.dtype(dtype), copy=False)
            data = to_numpy(data)
        host = np.asarray(data, order="C" if c_order else None)
        if dtype is not None:
            host = host.astype(dtype, copy=False)
            lib.check_dtype(host.dtype.name)
        return lib.asarray(xp, host, self.native)

    def synchronize(self) -> None:
        """Wait until every kernel queued on this device has finished (a no-op on the CPU)."""
        LIBRARIES[self.backend].synchronize(self)

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
        return LIBRARIES[self.backend].context(self)


def cuda_status(backend: str = "cupy") -> tuple[int, str]:
    """``(how many CUDA devices backend can compute on here, why none when 0)``.

    The why is a :class:`~.protocol.Reason` where the probe knows the fix for its cause (``why.fix``). For
    CuPy this runs a tiny matmul and kernel on ``cuda:0`` once per process (:func:`device` proves a
    requested ``cuda:N`` the same way); PyTorch and JAX must be installed (``ImportError`` otherwise).
    """
    return LIBRARIES[backend].cuda_status()


def cuda_count(backend: str) -> int:
    """How many CUDA devices ``backend`` can use here (0 when none, or for a CPU-only library)."""
    return cuda_status(backend)[0]


def cuda_devices() -> str:
    """One line for ``xpnet info``: the CUDA devices CuPy can use with their names, or why there are none."""
    count, why = cuda_status("cupy")
    if count:
        return ", ".join(f"cuda:{i} {n}" for i, n in enumerate(LIBRARIES["cupy"].device_names(count)))
    reasons = [f"CuPy: {why}"]
    try:
        tcount, twhy = cuda_status("torch")
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
    kinds = LIBRARIES[backend].KINDS
    if kind not in kinds:
        raise ValueError(f"backend {backend!r} cannot run on {kind!r}: it runs on {' or '.join(kinds)}")
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
    if backend is None or "cuda" in LIBRARIES[backend].KINDS:
        count, why = cuda_status(backend or "cupy")
        if count:
            dev = _make("cuda", 0, backend or "cupy")
            log.info("xpnet: device auto -> %s", dev)
            return dev
        if backend is not None and "cpu" not in LIBRARIES[backend].KINDS:
            raise DeviceUnavailableError(f"backend {backend!r} needs a CUDA GPU, but {why}. {_fix(backend, why)}")
        log.info("xpnet: device auto -> cpu, because %s", why)
    return _make("cpu", 0, backend or "numpy")


def _fix(backend: str, why: str) -> str:
    # A probe's reason may carry the fix for its own cause (CuPy's: no driver, an old one, no cuBLAS...).
    return why.fix if isinstance(why, Reason) and why.fix else LIBRARIES[backend].CUDA_FIX


def _require(backend: str) -> None:
    """Raise :class:`DeviceUnavailableError` with the fix when ``backend``'s library cannot be imported."""
    why = LIBRARIES[backend].missing()
    if why is not None:
        raise DeviceUnavailableError(f"backend {backend!r} cannot be used: {why}")


def _make(kind: str, index: int, backend: str) -> Device:
    _require(backend)
    lib = LIBRARIES[backend]
    if kind == "cuda":
        # Ask whether CUDA can be had before importing the namespace, which fails without CuPy.
        count, why = cuda_status(backend)
        if count == 0:
            raise DeviceUnavailableError(f"cuda:{index} was requested but {why}. {_fix(backend, why)}")
        if index >= count:
            raise DeviceUnavailableError(
                f"cuda:{index} was requested but this machine has {count} CUDA device(s), "
                f"numbered 0 to {count - 1}. Fix: pass --device cuda:0 ... cuda:{count - 1}, or --device cpu.")
        failed = lib.prove(index)  # the count proved cuda:0 only (what auto picks): this GPU must compute too
        if failed is not None:
            raise DeviceUnavailableError(f"cuda:{index} was requested but {failed}. {_fix(backend, failed)}")
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
    lib = owner(xp)
    if lib is None:
        raise TypeError(f"xpnet does not support arrays of type {type(x).__module__}.{type(x).__name__}")
    kind, index, label = lib.locate(x, native)
    return Device(kind, index, lib.NAME, xp, native, label)
