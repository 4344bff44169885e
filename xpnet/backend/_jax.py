"""JAX: CPU, and CUDA where a GPU build of jaxlib sees one. ``jax.numpy`` is an Array API namespace
itself (array-api-compat 1.16 returns it unwrapped for JAX arrays).

Two things differ from the other backends, and both are handled here or by the callers' generic paths:

- Arrays are immutable (``array_api_compat.is_writeable_array`` is False), so optimizers and the
  training snapshot rebind through the parameter mapping instead of writing in place.
- 64-bit types are off unless ``jax_enable_x64`` is set, and then a float64 request silently becomes
  float32. xpnet refuses that instead (see :meth:`Jax.check_dtype`): the fix is ``JAX_ENABLE_X64=1`` at
  start. It does not flip the flag itself: it is process-wide and JAX wants it set before any array exists.
"""

from __future__ import annotations

import array_api_compat
import numpy as np

from .protocol import CPU_FALLBACK, Backend

X64_FIX = ("JAX computes in 32 bits unless its 64-bit mode is on, and would silently give float32. "
           "Fix: start Python with JAX_ENABLE_X64=1 in the environment (or call "
           "jax.config.update('jax_enable_x64', True) before making any array), or use dtype='float32'.")


def _gpus() -> list:
    import jax

    try:
        return list(jax.devices("gpu"))
    except Exception:  # RuntimeError "Unknown backend: 'gpu' requested" on a CPU-only jaxlib
        return []


def _x64() -> bool:
    import jax

    return bool(jax.config.read("jax_enable_x64"))


class Jax(Backend):
    NAME = "jax"
    KINDS = ("cpu", "cuda")
    CUDA_FIX = f"Fix: install a CUDA build of JAX (`pip install -U 'jax[cuda12]'`), {CPU_FALLBACK}."

    def missing(self) -> str | None:
        try:
            import jax  # noqa: F401
        except ImportError as exc:
            return f"JAX is not installed ({exc}). Fix: pip install 'xpnet[jax]' (CPU; see JAX's docs for CUDA)"
        return None

    def cuda_status(self) -> tuple[int, str]:
        import jax

        count = len(_gpus())
        return count, "" if count else f"JAX {jax.__version__} sees no GPU (a CPU-only jaxlib, or no driver)"

    def check_dtype(self, name: str) -> None:
        """Refuse a 64-bit float type that JAX would silently compute in 32 bits (integer labels are held
        as int32 by :meth:`asarray`, which checks that they fit)."""
        if name in ("float64", "complex128") and not _x64():
            raise ValueError(f"dtype {name!r} on the jax backend: {X64_FIX}")

    def namespace(self):
        import jax.numpy as xp

        return xp

    def native(self, kind: str, index: int, xp):
        import jax

        return jax.devices("cpu")[0] if kind == "cpu" else _gpus()[index]

    def owns(self, xp) -> bool:
        return array_api_compat.is_jax_namespace(xp)

    def locate(self, x, native) -> tuple[str, int, str]:
        return ("cpu", 0, "") if native.platform == "cpu" else ("cuda", native.id, "")

    def asarray(self, xp, host, native):
        if host.dtype.itemsize == 8 and host.dtype.kind in "iuf" and not _x64():
            if host.dtype.kind == "f":
                raise ValueError(f"float64 data on the jax backend: {X64_FIX}")
            # Integer labels: int32 holds them; JAX would cast too, with a warning on every call.
            small = host.astype(np.int32 if host.dtype.kind == "i" else np.uint32)
            if host.size and not np.array_equal(small, host):
                raise ValueError(f"{host.dtype} values beyond 32 bits on the jax backend: {X64_FIX}")
            host = small
        return xp.asarray(host, device=native)

    def to_numpy(self, x):
        return np.array(x) if array_api_compat.is_jax_array(x) else None  # a copy: np.asarray is read-only

    def synchronize(self, dev) -> None:
        # JAX has no device-wide barrier; this waits for queued side effects. Block on arrays for timings.
        import jax

        jax.effects_barrier()

    def memory_pool_bytes(self, dev) -> int | None:
        # XLA's "pool_bytes": what its allocator holds now (above bytes_in_use where it keeps a pool); the
        # peak_* figures are peaks. None on the CPU, which has no stats.
        stats = dev.native.memory_stats() or {}
        return stats.get("pool_bytes")

    def free_memory_pool(self, dev) -> None:
        import jax

        jax.clear_caches()  # compiled executables; JAX frees buffers itself when they are no longer referenced

    def status(self) -> str:
        try:
            import jax
        except ImportError:
            return "not installed"
        count, _ = self.cuda_status()
        return f"ok, cpu{f' + {count} GPU(s)' if count else ''} (jax {jax.__version__})"

    def random_uniform(self, xp, native, seed, shape, dtype):
        import jax

        # threefry named explicitly, so a change of JAX's default PRNG cannot change the numbers.
        key = jax.random.wrap_key_data(seed.generate_state(2, np.uint32), impl="threefry2x32")
        with jax.default_device(native):
            return jax.random.uniform(key, shape, dtype=getattr(xp, dtype))

    def scatter_add(self, ids, values, rows):
        """Embedding's gradient through JAX's functional scatter, ``.at[ids].add`` (repeated ids add up)."""
        import jax.numpy as jnp

        return jnp.zeros_like(values, shape=(rows, values.shape[1])).at[ids].add(values)


BACKEND = Jax()
