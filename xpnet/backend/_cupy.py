"""CuPy: CUDA GPUs. Only what CuPy does in a way of its own lives here: the probe (can CUDA compute here,
and why not), the device context, waiting for the queue, the memory pool and NCCL. Arrays come and go by
the generic paths that the CPU backends run too: ``xp.asarray(host, device=)`` (array-api-compat's CuPy
``asarray`` enters the device), ``numpy.from_dlpack`` (CuPy >= 14 exports to the host by ``get()``) and
the host draw of random numbers (:meth:`~.protocol.Backend.random_uniform`).

array-api-compat's other CuPy creation functions ignore ``device=`` (compat #337): the current CUDA device
decides where CuPy allocates (and CuPy refuses to compute on arrays of another device), so everything
runs under :meth:`CuPy.context`, never under a global ``Device.use()``.
"""

from __future__ import annotations

import functools
import os
import re

import array_api_compat

from .protocol import CPU_FALLBACK, Backend, Reason

_INSTALL = ("Fix: install CuPy for your CUDA driver with `pip install 'xpnet[cuda12]'` (or 'xpnet[cuda13]'; "
            f"`nvidia-smi` shows the driver's CUDA version), {CPU_FALLBACK}.")


def _cuda(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def _ask(call, default):
    try:
        return call()
    except Exception:  # the driver (libcuda) or the runtime cannot be loaded
        return default


def _no_device(cupy, exc) -> Reason:
    """The cause when CuPy imports but counts no device: no driver, an old driver, or no GPU visible."""
    driver = _ask(cupy.cuda.runtime.driverGetVersion, 0)  # 0: libcuda (the driver) cannot be loaded
    needs = _ask(lambda: _cuda(cupy.cuda.runtime.runtimeGetVersion()), "?")
    said = f": {exc}" if exc is not None else ""
    if driver == 0:
        return Reason(f"CuPy {cupy.__version__} is installed but finds no NVIDIA driver: libcuda cannot be "
                      f"loaded (CUDA says{said or ' nothing'})",
                      f"Fix: on a machine with an NVIDIA GPU install its driver (`nvidia-smi` should then list "
                      f"the GPU); {CPU_FALLBACK}.")
    if "InsufficientDriver" in str(exc):
        return Reason(f"the NVIDIA driver supports CUDA {_cuda(driver)}, older than the CUDA {needs} this CuPy "
                      f"({cupy.__version__}) is built for{said}",
                      f"Fix: update the NVIDIA driver, or install the CuPy of the driver's CUDA (`pip install "
                      f"'xpnet[cuda{driver // 1000}]'` instead of cuda{needs.split('.')[0]}); {CPU_FALLBACK}.")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return Reason(f"the NVIDIA driver (CUDA {_cuda(driver)}) sees no usable CUDA device{hidden}{said}",
                  f"Fix: check that `nvidia-smi` lists a GPU{' and unset or fix CUDA_VISIBLE_DEVICES' if hidden else ''}"
                  f"; {CPU_FALLBACK}.")


def _missing_library(cupy, index: int, exc) -> Reason:
    text = f"{type(exc).__name__}: {exc}"
    found = re.search(r"lib[A-Za-z0-9_]+\.so(?:\.[0-9]+)*", text)
    major = _ask(cupy.cuda.runtime.runtimeGetVersion, 12000) // 1000
    what = f"the CUDA library {found.group(0)} is missing" if found else "a CUDA library failed"
    # No library named: the GPU itself may be the cause (another process holding all its memory, say).
    check = "" if found else (f"check cuda:{index} with `nvidia-smi` (is its memory taken?); if CUDA's "
                              f"libraries are missing, ")
    return Reason(f"CuPy sees cuda:{index} but cannot compute on it: {what} ({text})",
                  f"Fix: {check}`pip install 'xpnet[cuda{major}]'` (it brings CuPy's CUDA libraries: "
                  f"`pip install 'cupy-cuda{major}x[ctk]'`), or install the CUDA {major} Toolkit; {CPU_FALLBACK}.")


class CuPy(Backend):
    NAME = "cupy"
    KINDS = ("cuda",)

    def missing(self) -> str | None:
        return None  # its absence is reported by cuda_status(), with the fix for the user's CUDA

    def cuda_status(self) -> tuple[int, str]:
        """Return (number of CUDA devices CuPy can compute on, a :class:`Reason` when it is 0).

        ``cupy.cuda.is_available()`` only counts devices: with a driver but without the CUDA libraries (the
        bare wheel; cuBLAS and NVRTC come from its ``ctk`` extra or a CUDA Toolkit) it says True and the
        first matmul fails. So CUDA counts as usable once a tiny matmul and an elementwise kernel have run
        on device 0 (once per process: :meth:`prove`).
        """
        try:
            import cupy
        except Exception as exc:  # ImportError, or a broken CuPy/CUDA install raising on import
            return 0, Reason(f"CuPy is not installed ({type(exc).__name__}: {exc})", _INSTALL)
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # is_available() swallows this error; it is the one that says what is wrong
            return 0, _no_device(cupy, exc)
        if count == 0:
            return 0, _no_device(cupy, None)
        failed = self.prove(0)
        return (0, failed) if failed is not None else (count, "")

    @staticmethod
    @functools.cache
    def prove(index: int) -> "Reason | None":
        """Run a tiny matmul (cuBLAS) and an elementwise kernel (compiled by NVRTC) on ``cuda:index`` and
        read the result back; ``None`` if both worked, else the :class:`Reason` naming the library that is
        missing. Cached per process (``prove.cache_clear()`` forgets)."""
        import cupy

        try:
            with cupy.cuda.Device(index):
                a = cupy.full((4, 4), 0.5, dtype=cupy.float32)
                b = cupy.matmul(a, a)  # every entry 4 * 0.25 = 1
                kernel = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x + 1", "xpnet_probe")
                total = float(kernel(b).sum())
        except Exception as exc:
            return _missing_library(cupy, index, exc)
        if total != 48.0:
            return Reason(f"cuda:{index} computed a wrong result in a test (48 expected, {total} found)",
                          f"Fix: check the GPU and its driver with `nvidia-smi`; {CPU_FALLBACK}.")
        return None

    def device_names(self, count: int) -> list[str]:
        import cupy

        names = [cupy.cuda.runtime.getDeviceProperties(i)["name"] for i in range(count)]
        return [n.decode() if isinstance(n, bytes) else n for n in names]

    def namespace(self):
        import array_api_compat.cupy as xp

        return xp

    def native(self, kind: str, index: int, xp):
        import cupy

        return cupy.cuda.Device(index)

    def context(self, dev):
        # The device's own object: CuPy (>= 14) keeps the devices to restore on a stack per thread, not per
        # object, so one object nests and serves every thread.
        return dev.native

    def owns(self, xp) -> bool:
        return array_api_compat.is_cupy_namespace(xp)

    def locate(self, x, native) -> tuple[str, int, str]:
        return "cuda", native.id, ""

    def synchronize(self, dev) -> None:
        dev.native.synchronize()

    def memory_pool_bytes(self, dev) -> int:
        import cupy

        return cupy.get_default_memory_pool().total_bytes()  # now, on the current device; CuPy keeps no peak

    def free_memory_pool(self, dev) -> None:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()

    def status(self) -> str:
        count, why = self.cuda_status()
        return f"ok ({count} CUDA device(s))" if count else why

    def nccl_gpu(self, dev) -> str | None:
        import cupy
        from cupy.cuda import nccl  # in every CuPy; `available` says whether the NCCL library loaded

        return cupy.cuda.runtime.deviceGetPCIBusId(dev.index) if nccl.available else None

    def nccl_allreduce(self, dev, rank: int, size: int, share):
        """A function ``f(buf) -> buf`` that sums a flat CuPy array over ``size`` ranks through NCCL, in
        place.

        ``share(obj)`` gives every rank rank 0's ``obj`` (an MPI broadcast): it carries NCCL's unique id, the
        only thing NCCL needs from MPI. One communicator per process, on ``dev``'s GPU (one GPU per rank:
        :func:`xpnet.backend.nccl_allreduce` asks for NCCL only then). NOT RUN ON A GPU YET: written from
        CuPy's NCCL API (``cupy.cuda.nccl.NcclCommunicator.allReduce``) without a GPU to test it on;
        ``tests/test_distributed.py::test_nccl_allreduce_sums`` runs it where there are GPUs.
        """
        import cupy
        from cupy.cuda import nccl

        uid = share(nccl.get_unique_id() if rank == 0 else None)
        with dev.context():
            comm = nccl.NcclCommunicator(size, uid, rank)
        kinds = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

        def allreduce(buf):
            with dev.context():
                comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kinds[buf.dtype.name], nccl.NCCL_SUM,
                               cupy.cuda.get_current_stream().ptr)
            return buf

        return allreduce

    def scatter_add(self, ids, values, rows):
        """Embedding's gradient through ``cupyx.scatter_add`` (atomic adds: repeated ids add up, in no fixed
        order). NOT RUN ON A GPU YET: the test against the generic lines is tests/test_sequence_layers.py's
        ``gpu`` one."""
        import cupy
        import cupyx

        out = cupy.zeros((rows, values.shape[1]), dtype=values.dtype)  # on the current device (compat #337)
        cupyx.scatter_add(out, ids, values)
        return out


BACKEND = CuPy()
