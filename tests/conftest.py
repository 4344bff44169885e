"""Shared fixtures: every backend present on this machine, with readable ids.

``dev`` runs a test once per backend/device: NumPy and array-api-strict always (strict on its default
device and on its second device ``device1``, which catches any array made without ``device=`` and any
hidden conversion to NumPy), PyTorch and JAX (immutable arrays) when installed, CuPy under the ``gpu`` marker (skipped cleanly
when no CUDA GPU can be used), and PyTorch on CUDA under it too.
"""

from __future__ import annotations

import functools
import os

import pytest

import xpnet
from xpnet import backend


@functools.cache
def cuda_status() -> tuple[int, str]:
    """xpnet's own probe: CuPy imports, the driver counts a device, and a matmul and a kernel ran on it."""
    return backend.cuda_status()


def cuda_available() -> bool:
    return cuda_status()[0] > 0


@functools.cache
def torch_cuda_available() -> bool:
    return _have("torch") and backend.cuda_status("torch")[0] > 0


def _strict_device(index: int) -> xpnet.Device:
    import array_api_strict as xp

    native = xp.__array_namespace_info__().devices()[index]
    return backend.device_of(xp.asarray(0.0, device=native))


def _have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _jax_with_x64() -> bool:
    """Whether JAX is here; if so, turn on its 64-bit mode for this test process.

    Without it JAX refuses float64 (xpnet raises rather than compute in float32), and half the harness
    (the float64 gradient checks, the published-formula references) would skip. The flag is
    process-wide and must be set before any JAX array exists, so it is set here, at collection.
    The default mode (float64 refused, int64 labels held as int32) is tested in a fresh interpreter in
    test_backend.py.
    """
    if not _have("jax"):
        return False
    import jax

    jax.config.update("jax_enable_x64", True)
    return True


def backend_params():
    """(id, factory) pairs for every backend; used by the ``dev`` fixture and by tests that loop."""
    out = [pytest.param(lambda: xpnet.device("cpu"), id="numpy-cpu-float32")]
    if _have("array_api_strict"):
        out.append(pytest.param(lambda: xpnet.device("cpu", backend="array-api-strict"),
                                id="array-api-strict-cpu-float32"))
        out.append(pytest.param(lambda: _strict_device(1), id="array-api-strict-device1-float32"))
    if _have("torch"):
        out.append(pytest.param(lambda: xpnet.device("cpu", backend="torch"), id="torch-cpu-float32"))
    if _jax_with_x64():
        out.append(pytest.param(lambda: xpnet.device("cpu", backend="jax"), id="jax-cpu-float32"))
    out.append(pytest.param(lambda: xpnet.device("cuda"), id="cupy-cuda0-float32", marks=pytest.mark.gpu))
    torch_skip = pytest.mark.skipif(not torch_cuda_available(), reason="needs PyTorch with CUDA and a GPU")
    out.append(pytest.param(lambda: xpnet.device("cuda", backend="torch"), id="torch-cuda0-float32",
                            marks=[pytest.mark.gpu, torch_skip]))
    return out


@pytest.fixture(params=backend_params())
def dev(request) -> xpnet.Device:
    return request.param()


@pytest.fixture
def dtype() -> str:
    return "float32"


def pytest_collection_modifyitems(config, items):
    # Every test that asks for the real data trains on MNIST: mark it ``slow`` (deselect with -m "not slow").
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if cuda_available():
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU with CuPy: {cuda_status()[1]}")
    for item in items:
        if "gpu" in item.keywords and "torch-cuda" not in item.nodeid:  # those skip by torch's own probe
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir():
    """The folder with mnist/, fashion-mnist/, mnist-csv/ (from $XPNET_DATA), or skip."""
    path = os.environ.get("XPNET_DATA", "")
    if not path or not os.path.isdir(os.path.join(path, "mnist")):
        pytest.skip("real data not found: set XPNET_DATA to a folder holding mnist/ (CI uses ../shared/data)")
    return path


@pytest.fixture
def cli_environment(monkeypatch, tmp_path):
    """An empty download cache and no XPNET_DEVICE/BACKEND: only what a CLI test passes counts."""
    monkeypatch.setenv("XPNET_CACHE", str(tmp_path / "cache"))
    for var in ("XPNET_DEVICE", "XPNET_BACKEND"):
        monkeypatch.delenv(var, raising=False)


def run_main(capsys, *args):
    """``xpnet ARGS`` in this process: (exit status, stdout, stderr)."""
    from xpnet import cli

    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
