"""PyTorch: CPU, and CUDA where its build and the driver allow. Also the tests' gradient oracle."""

from __future__ import annotations

import os

import array_api_compat

from ._cupy import BACKEND as CUPY  # the fix for torch without a GPU names CuPy when CuPy sees one
from .protocol import CPU_FALLBACK, NO_CONTEXT, Backend, Reason, cache_sized_chunk


class Torch(Backend):
    NAME = "torch"
    KINDS = ("cpu", "cuda")

    def missing(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return (f"PyTorch is not installed ({exc}). Fix: pip install 'xpnet[torch]', or for a CPU-only build "
                    "(no GBs of CUDA libraries) pip install torch --index-url https://download.pytorch.org/whl/cpu")
        return None

    def cuda_status(self) -> tuple[int, str]:
        """Return (number of CUDA devices PyTorch can use, a :class:`~.protocol.Reason` with the fix when it
        is 0)."""
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count(), ""
        # The fix is PyTorch's to make, not CuPy's: a CUDA build of torch, or a driver and a visible GPU.
        cupy_sees = CUPY.cuda_status()[0]
        other = f"; or use CuPy, which sees {cupy_sees} GPU(s): --backend cupy" if cupy_sees else ""
        built = torch.version.cuda or getattr(torch.version, "hip", None)  # ROCm builds answer to "cuda" too
        if built is None:
            return 0, Reason(
                f"PyTorch {torch.__version__} is a CPU-only build, without CUDA",
                f"Fix: install a CUDA build of PyTorch (`pip install torch --index-url "
                f"https://download.pytorch.org/whl/cu126`; https://pytorch.org/get-started/locally/ gives the "
                f"command for your driver){other}; {CPU_FALLBACK}.")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return 0, Reason(
            f"PyTorch {torch.__version__} (built for CUDA {built}) sees no GPU{hidden}",
            f"Fix: check that `nvidia-smi` lists a GPU and that its driver supports CUDA {built}"
            f"{' (and unset or fix CUDA_VISIBLE_DEVICES)' if hidden else ''}"
            f"{other}; {CPU_FALLBACK}.")

    def namespace(self):
        import array_api_compat.torch as xp

        return xp

    def native(self, kind: str, index: int, xp):
        import torch

        return torch.device("cpu") if kind == "cpu" else torch.device("cuda", index)

    def context(self, dev):
        if dev.kind != "cuda":
            return NO_CONTEXT
        import torch

        # torch places by device=, but its caching allocator, streams and empty_cache() follow the current device.
        return torch.cuda.device(dev.index)

    def owns(self, xp) -> bool:
        return array_api_compat.is_torch_namespace(xp)

    def locate(self, x, native) -> tuple[str, int, str]:
        return ("cuda", native.index or 0, "") if native.type == "cuda" else ("cpu", 0, "")

    def to_numpy(self, x):
        return x.detach().cpu().numpy() if array_api_compat.is_torch_array(x) else None

    def synchronize(self, dev) -> None:
        if dev.kind == "cuda":
            import torch

            torch.cuda.synchronize(dev.native)

    def memory_pool_bytes(self, dev) -> int:
        import torch

        # What the caching allocator holds now (reserved), as CuPy's pool total_bytes(): the comparable
        # figure; memory_allocated counts only the bytes in live tensors, the max_* figures are peaks.
        return torch.cuda.memory_reserved(dev.native)

    def free_memory_pool(self, dev) -> None:
        import torch

        torch.cuda.empty_cache()

    def status(self) -> str:
        try:
            import torch
        except ImportError:
            return "not installed"
        tcount, _ = self.cuda_status()
        return f"ok, cpu{f' + {tcount} CUDA device(s)' if tcount else ''} (torch {torch.__version__})"

    def random_uniform(self, xp, native, seed, shape, dtype):
        import numpy as np
        import torch

        # A fresh generator on the tensor's device (Philox on CUDA), seeded from (key, counter): no state
        # carried from call to call, so nothing but the two ints needs saving.
        generator = torch.Generator(device=native)
        generator.manual_seed(int(seed.generate_state(1, np.uint64)[0]))
        return torch.rand(shape, generator=generator, dtype=getattr(xp, dtype), device=native)

    def im2col_chunk(self, x, sample_elements):
        """On the CPU, chunks of ``Conv2D``'s columns that stay in the cache, as NumPy's; on CUDA ``None``:
        the generic rule, the whole batch within a memory bound. The MNIST preset's second convolution,
        forward and backward at batch 64 on one CPU thread: 68 ms in chunks of 6 samples, 110 ms whole.
        (JAX on the CPU goes the other way, 107 ms whole against 190 ms in chunks, and keeps the generic rule.)
        """
        return cache_sized_chunk(sample_elements, x.shape[0]) if x.device.type == "cpu" else None

    def scatter_add(self, ids, values, rows):
        """Embedding's gradient through ``index_add_`` (the generic one-hot product holds ids x rows numbers)."""
        import torch

        out = torch.zeros((rows, values.shape[1]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, ids, values)

    def step_at_once(self, flat):
        """On the CPU ``False``, as NumPy's (AdamW on 784-512-256-10, one thread: 2.7 ms a step over the flat
        buffer, 1.9 ms array by array); on CUDA ``None``: the generic rule, one launch per term."""
        return False if flat.device.type == "cpu" else None


BACKEND = Torch()
