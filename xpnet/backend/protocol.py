"""The backend protocol: what each library file of :mod:`xpnet.backend` provides, written down once.

A backend is one file (``_numpy``, ``_cupy``, ``_torch``, ``_strict``, ``_jax``) holding a subclass of
:class:`Backend` and one instance of it, ``BACKEND``; :mod:`.registry` collects them. The rest of the
package asks the instance and never the library's name: what a library does in its own way (a fast
routine, a memory pool, a device context) it overrides here under the generic name, and what it does not
do falls to the default below. A backend that lacks a required name cannot be made (``TypeError``
naming it), so ``import xpnet`` fails at once rather than a call later.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable

import numpy as np

# How a fix for a missing GPU ends: the way around it, whatever the cause.
CPU_FALLBACK = "or run on the CPU with `--device cpu` / XPNET_DEVICE=cpu"

NO_CONTEXT = contextlib.nullcontext()  # reusable and reentrant: no object per call on the per-sample path


class Reason(str):
    """Why CUDA cannot be used (the text), with ``fix``: what the user can do about that cause."""

    def __new__(cls, text: str, fix: str):
        self = super().__new__(cls, text)
        self.fix = fix
        return self


class Backend(abc.ABC):
    """One array library as xpnet uses it. ``dev`` below is an :class:`xpnet.Device` of this backend,
    ``xp`` its Array API namespace and ``native`` the library's own device object.

    Required (abstract: a subclass without one of them cannot be instantiated): :attr:`NAME`,
    :attr:`KINDS`, :meth:`missing`, :meth:`cuda_status`, :meth:`namespace`, :meth:`native`, :meth:`owns`,
    :meth:`locate` and :meth:`status`. Optional, with the default written here: :attr:`CUDA_FIX`,
    :meth:`prove`, :meth:`check_dtype`, :meth:`asarray`, :meth:`random_uniform`, :meth:`context`,
    :meth:`to_numpy`, :meth:`synchronize`, :meth:`memory_pool_bytes`, :meth:`free_memory_pool`,
    :meth:`nccl_gpu`, :meth:`nccl_allreduce`, :meth:`device_names` and the layer routines
    (:data:`xpnet.backend.ROUTINES`: :attr:`matmul_tn`, :attr:`im2col`, :attr:`col2im`, :attr:`im2col_chunk`,
    :attr:`conv2d_forward`, :attr:`relu`, :attr:`scatter_add`,
    :attr:`step_at_once`, ...).
    """

    @property
    @abc.abstractmethod
    def NAME(self) -> str:  # noqa: N802 (a constant: subclasses set it as a class attribute)
        """The backend's name, as ``backend=`` takes it (``"numpy"``, ``"array-api-strict"``...)."""

    @property
    @abc.abstractmethod
    def KINDS(self) -> tuple[str, ...]:  # noqa: N802
        """The device kinds it can run on: ``("cpu",)``, ``("cuda",)`` or ``("cpu", "cuda")``."""

    # What to do when CUDA cannot be had and the probe's :class:`Reason` carries no fix of its own.
    CUDA_FIX = ("Fix: install CuPy for your CUDA driver with `pip install 'xpnet[cuda12]'` "
                f"(or 'xpnet[cuda13]'), {CPU_FALLBACK}.")

    # -- required ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def missing(self) -> str | None:
        """``None`` when the library imports, else why not and the install command."""

    @abc.abstractmethod
    def cuda_status(self) -> tuple[int, str]:
        """``(number of CUDA devices it can compute on, why none when 0)``; the why may be a
        :class:`Reason` carrying the fix for that cause. Called before :meth:`namespace`."""

    @abc.abstractmethod
    def namespace(self):
        """The Array API namespace (imported here, when the backend is first used)."""

    @abc.abstractmethod
    def native(self, kind: str, index: int, xp):
        """The library's device object for ``kind`` (``"cpu"``/``"cuda"``) and the CUDA ordinal ``index``."""

    @abc.abstractmethod
    def owns(self, xp) -> bool:
        """Whether ``xp`` is this library's namespace."""

    @abc.abstractmethod
    def locate(self, x, native) -> tuple[str, int, str]:
        """``(kind, index, name)`` of the device of array ``x``, whose library device is ``native``; the name
        tells apart devices that share kind and index (array-api-strict's), else ``""``."""

    @abc.abstractmethod
    def status(self) -> str:
        """``"ok"`` with what it found, or why it cannot be used (one line of ``xpnet info``)."""

    # -- optional: the defaults are those of a CPU library that follows the standard ---------------------
    def prove(self, index: int) -> "Reason | None":
        """``None`` when ``cuda:index`` (counted by :meth:`cuda_status`) computes, else why not; called for
        the CUDA device a user asks for. By default the count is proof enough."""
        return None

    def check_dtype(self, name: str) -> None:
        """Raise ``ValueError`` (with the fix) for a dtype the library would silently compute in another."""

    def asarray(self, xp, host, native):
        """The NumPy array ``host``, already of the wanted dtype, as an array of this library on ``native``
        (one host-to-device copy on a GPU: array-api-compat's CuPy ``asarray`` enters ``device=``)."""
        return xp.asarray(host, device=native)

    def random_uniform(self, xp, native, seed, shape: tuple, dtype: str):
        """Uniform numbers in ``[0, 1)`` on ``native``, from the ``numpy.random.SeedSequence`` ``seed``
        (see :func:`xpnet.backend.random_uniform`).

        By default drawn on the host by NumPy (the standard has no random API), then moved in one copy: the
        same numbers on every backend that keeps the default (NumPy, array-api-strict, CuPy), bit for bit.
        What a step's Dropout masks cost that way (float32; medians of runs on a shared 2-core EPYC): the
        MLP preset's 512 and 256 units 0.2-0.4 ms at batch 128 and 0.4-0.8 ms at 256, the CNN preset's
        (64, 12, 12) and 128 units 3.2-4.6 ms at batch 128 and 5-9 ms at 256: 2-4 ns a number. The copy
        to a GPU is 4 bytes a number: 0.38 and 0.75 MiB a step for the MLP, 4.6 and 9.1 MiB for the CNN.
        CuPy copies NumPy input through a pinned buffer and an asynchronous transfer (no sync), so the
        host's draw overlaps the kernels already queued. A generator on the device would spare the host,
        but would give other masks than NumPy's, and none has run on a GPU here.
        """
        return self.asarray(xp, np.random.default_rng(seed).random(shape, dtype=dtype), native)

    def context(self, dev):
        """A context manager making ``dev`` the current device (see :meth:`xpnet.Device.context`)."""
        return NO_CONTEXT

    def to_numpy(self, x):
        """``x`` copied to the host as NumPy if it is this library's array and DLPack will not do, else
        ``None`` (the caller then reads it through ``numpy.from_dlpack``)."""
        return None

    def synchronize(self, dev) -> None:
        """Wait until the work queued on ``dev`` has finished."""

    def memory_pool_bytes(self, dev) -> int | None:
        """Bytes the GPU memory pool of ``dev`` holds now (in arrays or cached for reuse: what the library
        has taken from the driver), or ``None`` where there is no pool or the library does not say."""
        return None

    def free_memory_pool(self, dev) -> None:
        """Give the cached GPU memory of ``dev`` back to the driver."""

    def nccl_gpu(self, dev) -> str | None:
        """Where the library can sum over ranks through NCCL on ``dev``: its GPU's PCI bus id (the same GPU
        has the same id in every process, whatever ``CUDA_VISIBLE_DEVICES`` numbers it), else ``None`` (the
        ranks then sum through MPI on the host)."""
        return None

    def nccl_allreduce(self, dev, rank: int, size: int, share) -> Callable[[Any], Any] | None:
        """A function summing a flat array over ranks in place through NCCL (called only where every rank's
        :meth:`nccl_gpu` gave a GPU of its own), or ``None`` where there is no NCCL path."""
        return None

    def device_names(self, count: int) -> list[str]:
        """The names of the first ``count`` CUDA devices, for ``xpnet info``."""
        return [f"CUDA device {i}" for i in range(count)]

    # The layer routines (:data:`xpnet.backend.ROUTINES`): ``None`` where the library has no faster way of
    # its own and the layer runs its generic Array API lines. Signatures: those of the generic code.
    matmul: Callable[..., Any] | None = None
    matmul_tn: Callable[..., Any] | None = None
    sgd_dense: Callable[..., Any] | None = None
    im2col: Callable[..., Any] | None = None
    col2im: Callable[..., Any] | None = None
    im2col_chunk: Callable[..., Any] | None = None
    scatter_add: Callable[..., Any] | None = None
    step_at_once: Callable[..., Any] | None = None
    conv2d_forward: Callable[..., Any] | None = None
    conv2d_backward: Callable[..., Any] | None = None
    max_pool2d: Callable[..., Any] | None = None
    max_pool2d_backward: Callable[..., Any] | None = None
    relu: Callable[..., Any] | None = None
    relu_backward: Callable[..., Any] | None = None
    dropout: Callable[..., Any] | None = None
    dropout_backward: Callable[..., Any] | None = None
    softmax_cross_entropy: Callable[..., Any] | None = None
    softmax_cross_entropy_backward: Callable[..., Any] | None = None
    layer_norm: Callable[..., Any] | None = None
    layer_norm_backward: Callable[..., Any] | None = None
    gelu: Callable[..., Any] | None = None
    gelu_backward: Callable[..., Any] | None = None
    attention_softmax: Callable[..., Any] | None = None
    attention_softmax_backward: Callable[..., Any] | None = None


# What a CPU's cache holds of a convolution's columns: 2**20 numbers (4 MiB in float32).
CPU_CACHE_ELEMENTS = 2**20


def cache_sized_chunk(sample_elements: int, batch: int) -> int:
    """Samples per chunk of ``Conv2D``'s columns on a CPU: as many as stay within :data:`CPU_CACHE_ELEMENTS`
    (at least one), a speed tuning where the generic rule only bounds the memory.

    A fresh 85 MB column array is page-faulted in on every step (NumPy, batch 128 of the MNIST preset: 270
    ms a step with 64 MiB chunks, 216 ms with 16 MiB), and 4 MiB of columns stay in the CPU's cache (batch
    64: 75 ms a step against 80 ms with 16 MiB; measured on a 2-core CPU).
    """
    return max(1, min(batch, CPU_CACHE_ELEMENTS // sample_elements))
