"""PyTorch: CPU, and CUDA where its build and the driver allow. Also the tests' gradient oracle."""

from __future__ import annotations

import array_api_compat

NAME = "torch"
KINDS = ("cpu", "cuda")


def missing() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return (f"PyTorch is not installed ({exc}). Fix: pip install 'xpnet[torch]', or for a CPU-only build "
                "(no GBs of CUDA libraries) pip install torch --index-url https://download.pytorch.org/whl/cpu")
    return None


def cuda_status() -> tuple[int, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), ""
    return 0, f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only build, or no driver)"


def namespace():
    import array_api_compat.torch as xp

    return xp


def native(kind: str, index: int, xp):
    import torch

    return torch.device("cpu") if kind == "cpu" else torch.device("cuda", index)


def context(dev):
    import contextlib

    if dev.kind != "cuda":
        return contextlib.nullcontext()
    import torch

    # torch places by device=, but its caching allocator, streams and empty_cache() follow the current device.
    return torch.cuda.device(dev.index)


def owns(xp) -> bool:
    return array_api_compat.is_torch_namespace(xp)


def locate(x, native) -> tuple[str, int, str]:
    return ("cuda", native.index or 0, "") if native.type == "cuda" else ("cpu", 0, "")


def asarray(xp, host, native):
    return xp.asarray(host, device=native)


def is_array(x) -> bool:
    return array_api_compat.is_torch_array(x)


def to_numpy(x):
    return x.detach().cpu().numpy()


def synchronize(dev) -> None:
    if dev.kind == "cuda":
        import torch

        torch.cuda.synchronize(dev.native)


def memory_pool_bytes(dev) -> int:
    import torch

    # What the caching allocator holds (reserved), as CuPy's pool total_bytes(): the comparable figure;
    # max_memory_allocated counts only the bytes in live tensors.
    return torch.cuda.max_memory_reserved(dev.native)


def free_memory_pool(dev) -> None:
    import torch

    torch.cuda.empty_cache()


def status() -> str:
    try:
        import torch
    except ImportError:
        return "not installed"
    tcount, _ = cuda_status()
    return f"ok, cpu{f' + {tcount} CUDA device(s)' if tcount else ''} (torch {torch.__version__})"


def random_uniform(xp, native, seed, shape, dtype):
    import numpy as np
    import torch

    # A fresh generator on the tensor's device (Philox on CUDA), seeded from (key, counter): no state
    # carried from call to call, so nothing but the two ints needs saving.
    generator = torch.Generator(device=native)
    generator.manual_seed(int(seed.generate_state(1, np.uint64)[0]))
    return torch.rand(shape, generator=generator, dtype=getattr(xp, dtype), device=native)
