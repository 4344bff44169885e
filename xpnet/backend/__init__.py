"""Devices and array backends.

This is the one package of xpnet that knows array libraries by name. Everything else asks it for a
:class:`Device` and then works through the Array API namespace ``device.xp`` (or the namespace of
the arrays it is handed), so the same math runs on NumPy, CuPy, PyTorch, JAX and array-api-strict.

- :mod:`.protocol`: :class:`Backend`, what every library provides (required names and optional hooks
  with their defaults), written down once;
- ``_numpy``, ``_cupy``, ``_torch``, ``_strict``, ``_jax``: one file per library, each a ``Backend``
  holding all that is specific to it, collected in :data:`LIBRARIES` by :mod:`.registry`;
- :mod:`.devices`: :class:`Device`, choosing one (:func:`device`) and the CUDA probes' answers;
- :mod:`.arrays`: namespaces, :func:`to_numpy`, random numbers, the layers' fast routines;
- :mod:`.runtime`: synchronizing, memory pools, out-of-memory errors, NCCL.

This file only re-exports.

    >>> import xpnet
    >>> dev = xpnet.device("auto")        # CUDA when CuPy sees a GPU, else the CPU (and says why)
    >>> x = dev.asarray([[1.0, 2.0]])      # host data onto the device, float32 by default
    >>> xpnet.to_numpy(x * 2)              # and back to the host as NumPy
    array([[2., 4.]], dtype=float32)
"""

from .arrays import (ROUTINES, dispatch, host_rng, is_array, is_host_array, namespace, random_uniform, routine,
                     to_numpy)
from .devices import (Device, DeviceUnavailableError, cuda_count, cuda_devices, cuda_status, device, device_of,
                      parse_backend, parse_device)
from .protocol import Backend, Reason
from .registry import BACKENDS, LIBRARIES
from .runtime import (DeviceOutOfMemoryError, available_backends, free_memory_pool, is_out_of_memory,
                      memory_pool_bytes, nccl_allreduce, synchronize)

__all__ = [
    "BACKENDS", "LIBRARIES", "ROUTINES", "Backend", "Device", "DeviceOutOfMemoryError", "DeviceUnavailableError",
    "Reason", "available_backends", "cuda_count", "cuda_devices", "cuda_status", "device", "device_of", "dispatch",
    "free_memory_pool", "host_rng", "is_array", "is_host_array", "is_out_of_memory", "memory_pool_bytes",
    "namespace", "nccl_allreduce", "parse_backend", "parse_device", "random_uniform", "routine", "synchronize",
    "to_numpy",
]
