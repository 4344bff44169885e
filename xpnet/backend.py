"""Devices and array backends.

This is the one module of xpnet that knows array libraries by name. Everything else asks it for a
:class:`Device` and then works through the Array API namespace ``device.xp`` (or the namespace of
the arrays it is handed), so the same math runs on NumPy, CuPy, PyTorch and array-api-strict.

    >>> import xpnet
    >>> dev = xpnet.device("auto")        # CUDA when CuPy sees a GPU, else the CPU (and says why)
    >>> x = dev.asarray([[1.0, 2.0]])      # host data onto the device, float32 by default
    >>> xpnet.to_numpy(x * 2)              # and back to the host as NumPy
    array([[2., 4.]], dtype=float32)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

log = logging.getLogger("xpnet")

BACKENDS = ("numpy", "cupy", "torch", "array-api-strict")
_DEFAULT_BACKEND = {"cpu": "numpy", "cuda": "cupy"}
_KINDS = {"numpy": ("cpu",), "cupy": ("cuda",), "torch": ("cpu", "cuda"), "array-api-strict": ("cpu",)}
_SPEC = re.compile(r"^(cpu|cuda|gpu)(?::(\d+))?$")
_ACCEPTED = "'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...; 'gpu' and 'gpu:N' are accepted too)"
_CUDA_FIX = ("Fix: install CuPy for your CUDA driver with `pip install 'xpnet[cuda12]'` "
             "(or 'xpnet[cuda13]'), or run on the CPU with `--device cpu` / XPNET_DEVICE=cpu.")


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
            return getattr(self.xp, name)
        except AttributeError:
            raise ValueError(f"unknown dtype {name!r}: use 'float32' or 'float64'") from None

    def asarray(self, data, dtype: str | None = "float32"):
        """Put ``data`` (NumPy array, nested lists, or an array of this backend) on this device.

        Host data is cast on the host first, so the device gets exactly the bits NumPy computed (that is
        what makes a seed give identical weights everywhere). Pass ``dtype=None`` to keep the data's own.
        """
        xp = self.xp
        if is_array(data) and not array_api_compat.is_numpy_array(data):
            if device_of(data) == self:
                return data if dtype is None else xp.astype(data, self.dtype(dtype), copy=False)
            data = to_numpy(data)
        host = np.asarray(data)
        if dtype is not None:
            host = host.astype(dtype, copy=False)
        if self.backend == "numpy":
            return host  # compat's numpy namespace works on plain ndarrays: no copy
        if self.backend == "cupy":
            with self.native:
                return xp.asarray(host)
        return xp.asarray(host, device=self.native)

    def synchronize(self) -> None:
        """Wait until every kernel queued on this device has finished (a no-op on the CPU)."""
        synchronize(self)


def is_array(x) -> bool:
    return array_api_compat.is_array_api_obj(x)


def _cuda_status() -> tuple[int, str]:
    """Return (number of CUDA devices CuPy can use, why none when it is 0)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CuPy/CUDA install raising on import
        return 0, f"CuPy is not installed ({type(exc).__name__}: {exc})"
    if cupy.cuda.is_available():
        return cupy.cuda.runtime.getDeviceCount(), ""
    # is_available() swallows the driver's error; ask again to be able to show it.
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return 0, f"CuPy is installed but CUDA cannot be used: {exc}"
    return 0, f"CuPy is installed but sees {count} CUDA devices"


def _torch_cuda_status() -> tuple[int, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), ""
    return 0, f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only build, or no driver)"


def _namespace(backend: str):
    if backend == "numpy":
        import array_api_compat.numpy as xp
    elif backend == "cupy":
        import array_api_compat.cupy as xp
    elif backend == "torch":
        import array_api_compat.torch as xp
    elif backend == "array-api-strict":
        import array_api_strict as xp

        # 2024.12 is the first version with scalars in maximum/where and take_along_axis.
        if xp.get_array_api_strict_flags()["api_version"] < "2024.12":
            xp.set_array_api_strict_flags(api_version="2024.12")
    else:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return xp


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
    checks that code sticks to the standard).
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
    backend = {"strict": "array-api-strict", "pytorch": "torch"}.get(backend, backend)
    if backend not in BACKENDS:
        where = f" (from {source})" if source else ""
        raise ValueError(f"unknown backend {name!r}{where}: choose one of {', '.join(BACKENDS)}")
    return backend


def _auto(backend: str | None) -> Device:
    if backend is not None:
        _require(backend)
    if backend in (None, "cupy", "torch"):
        count, why = _torch_cuda_status() if backend == "torch" else _cuda_status()
        if count:
            dev = _make("cuda", 0, backend or "cupy")
            log.info("xpnet: device auto -> %s", dev)
            return dev
        if backend == "cupy":
            raise DeviceUnavailableError(f"backend 'cupy' needs a CUDA GPU, but {why}. {_CUDA_FIX}")
        log.info("xpnet: device auto -> cpu, because %s", why)
    return _make("cpu", 0, backend or "numpy")


_INSTALL = {
    "torch": "PyTorch is not installed ({exc}). Fix: pip install 'xpnet[torch]', or for a CPU-only build "
             "(no GBs of CUDA libraries) pip install torch --index-url https://download.pytorch.org/whl/cpu",
    "array-api-strict": "array-api-strict is not installed ({exc}). Fix: pip install array-api-strict",
}


def _require(backend: str) -> None:
    """Raise :class:`DeviceUnavailableError` with the fix when ``backend``'s library cannot be imported."""
    module = {"torch": "torch", "array-api-strict": "array_api_strict"}.get(backend)
    if module is None:
        return
    try:
        __import__(module)
    except ImportError as exc:
        raise DeviceUnavailableError(f"backend {backend!r} cannot be used: "
                                     + _INSTALL[backend].format(exc=exc)) from None


def _make(kind: str, index: int, backend: str) -> Device:
    _require(backend)
    if backend == "torch":
        import torch
    if kind == "cuda":
        # Ask whether CUDA can be had before importing the namespace, which fails without CuPy.
        count, why = _torch_cuda_status() if backend == "torch" else _cuda_status()
        if count == 0:
            raise DeviceUnavailableError(f"cuda:{index} was requested but {why}. {_CUDA_FIX}")
        if index >= count:
            raise DeviceUnavailableError(
                f"cuda:{index} was requested but this machine has {count} CUDA device(s), "
                f"numbered 0 to {count - 1}. Fix: pass --device cuda:0 ... cuda:{count - 1}, or --device cpu.")
    xp = _namespace(backend)
    if kind == "cpu":
        if backend == "torch":
            return Device("cpu", 0, backend, xp, torch.device("cpu"))
        if backend == "array-api-strict":
            native = xp.__array_namespace_info__().default_device()
            return Device("cpu", 0, backend, xp, native)
        return Device("cpu", 0, backend, xp, "cpu")
    if backend == "torch":
        return Device("cuda", index, backend, xp, torch.device("cuda", index))
    import cupy

    if index != 0:
        # array-api-compat's cupy creation functions ignore device= (compat #337): keep the GPU current.
        cupy.cuda.Device(index).use()
    return Device("cuda", index, backend, xp, cupy.cuda.Device(index))


def device_of(x) -> Device:
    """The :class:`Device` an array lives on (the data-follows-the-array direction)."""
    xp = array_api_compat.array_namespace(x)
    native = array_api_compat.device(x)
    if array_api_compat.is_numpy_namespace(xp):
        return Device("cpu", 0, "numpy", xp, "cpu")
    if array_api_compat.is_cupy_namespace(xp):
        return Device("cuda", getattr(native, "id", 0), "cupy", xp, native)
    if array_api_compat.is_torch_namespace(xp):
        kind = "cuda" if native.type == "cuda" else "cpu"
        return Device(kind, native.index or 0, "torch", xp, native)
    if array_api_compat.is_array_api_strict_namespace(xp):
        default = xp.__array_namespace_info__().default_device()
        # Its devices print as Device('device1'): keep the name, which tells them apart.
        name = "" if native == default else repr(native).split("'")[1]
        return Device("cpu", 0, "array-api-strict", xp, native, name)
    raise TypeError(f"xpnet does not support arrays of type {type(x).__module__}.{type(x).__name__}")


def to_numpy(x) -> np.ndarray:
    """Bring an array of any backend (or a scalar) back to the host as a NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (np.generic, int, float, bool, list, tuple)):
        # NumPy reductions return NumPy scalars rather than 0-D arrays (numpy #26850).
        return np.asarray(x)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.from_dlpack(x, device="cpu")


def synchronize(dev: Device) -> None:
    """Block until ``dev`` has finished its queued work (for honest timings)."""
    if dev.kind != "cuda":
        return
    if dev.backend == "cupy":
        dev.native.synchronize()
    elif dev.backend == "torch":
        import torch

        torch.cuda.synchronize(dev.native)


def host_rng(seed=None) -> np.random.Generator:
    """The host random generator that every random draw of xpnet comes from (init, shuffling, dropout)."""
    return np.random.default_rng(seed)


def available_backends() -> dict[str, str]:
    """Map each backend to ``"ok"`` or the reason it cannot be used here (for ``xpnet info``)."""
    out = {"numpy": "ok"}
    count, why = _cuda_status()
    out["cupy"] = f"ok ({count} CUDA device(s))" if count else why
    try:
        import torch

        tcount, twhy = _torch_cuda_status()
        out["torch"] = f"ok, cpu{f' + {tcount} CUDA device(s)' if tcount else ''} (torch {torch.__version__})"
    except ImportError:
        out["torch"] = "not installed"
    try:
        import array_api_strict

        out["array-api-strict"] = f"ok (array-api-strict {array_api_strict.__version__})"
    except ImportError:
        out["array-api-strict"] = "not installed"
    return out


def memory_pool_bytes(dev: Device) -> int | None:
    """Peak bytes held by the GPU memory pool of ``dev`` (``None`` on the CPU)."""
    if dev.kind != "cuda":
        return None
    if dev.backend == "cupy":
        import cupy

        return cupy.get_default_memory_pool().total_bytes()
    import torch

    return torch.cuda.max_memory_allocated(dev.native)


def free_memory_pool(dev: Device) -> None:
    """Give cached GPU memory back to the driver (after an out-of-memory error, say)."""
    if dev.kind != "cuda":
        return
    if dev.backend == "cupy":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    else:
        import torch

        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error of any backend."""
    name = type(exc).__name__
    return name in ("OutOfMemoryError", "MemoryError") or "out of memory" in str(exc).lower()
