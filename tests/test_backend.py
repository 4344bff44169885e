"""Device selection and host/device transfer."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import xpnet
from xpnet import backend
from conftest import cuda_available

no_cuda = pytest.mark.skipif(cuda_available(), reason="this machine has a usable CUDA GPU")


@no_cuda
def test_auto_falls_back_to_cpu_and_says_why(caplog, monkeypatch):
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    with caplog.at_level(logging.INFO, logger="xpnet"):
        dev = xpnet.device("auto")
    assert (dev.kind, dev.backend) == ("cpu", "numpy")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "cpu" in messages[0] and ("CuPy" in messages[0] or "CUDA" in messages[0])


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_explicit_cuda_without_gpu_names_cause_and_fix(spec):
    with pytest.raises(xpnet.DeviceUnavailableError) as info:
        xpnet.device(spec)
    message = str(info.value)
    assert "CuPy" in message  # the cause: not installed, or no driver / device
    # the fix for that cause: install CuPy when it is missing, the driver when that is (test_gpu_paths.py)
    if "not installed" in message:
        assert "pip install 'xpnet[cuda12]'" in message
    assert "Fix:" in message and "--device cpu" in message


def test_cuda_index_beyond_device_count_names_the_count(monkeypatch):
    monkeypatch.setattr(backend.LIBRARIES["cupy"], "cuda_status", lambda: (1, ""))
    with pytest.raises(xpnet.DeviceUnavailableError, match=r"cuda:7 .* has 1 CUDA device\(s\), numbered 0 to 0"):
        xpnet.device("cuda:7")


@pytest.mark.parametrize("spec", ["gpu:x", "cuda:-1", "gpu", "cuda:", "cpu:1", "", "cuda:0:1", "tpu"])
def test_bad_specs_name_the_accepted_forms(spec):
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda' or 'cuda:N'"):
        xpnet.device(spec)


def test_non_string_spec_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a string"):
        xpnet.device(0)


@pytest.mark.parametrize("spec, name", [("cuda", "numpy"), ("cuda", "array-api-strict"), ("cpu", "cupy")])
def test_invalid_backend_device_combinations(spec, name):
    with pytest.raises(ValueError, match=f"backend '{name}' cannot run on"):
        xpnet.device(spec, backend=name)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'mxnet'.*numpy, cupy, torch, array-api-strict, jax"):
        xpnet.device("cpu", backend="mxnet")


def test_environment_variables_choose_device_and_backend(monkeypatch):
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    monkeypatch.setenv("XPNET_BACKEND", "array-api-strict")
    dev = xpnet.device()
    assert (dev.kind, dev.backend) == ("cpu", "array-api-strict")
    monkeypatch.setenv("XPNET_DEVICE", "gpu:x")
    with pytest.raises(ValueError):
        xpnet.device()


def test_device_passes_through_and_compares():
    dev = xpnet.device("cpu")
    assert xpnet.device(dev) is dev
    assert xpnet.device("cpu") == dev and xpnet.device("cpu", backend="array-api-strict") != dev
    assert str(dev) == "cpu (numpy)"
    with pytest.raises(ValueError, match="uses backend 'numpy'"):
        xpnet.device(dev, backend="torch")


def test_round_trip_through_the_device(dev):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    x = dev.asarray(host)
    assert x.dtype == dev.xp.float32
    assert xpnet.device_of(x) == dev
    back = xpnet.to_numpy(x)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, host)
    assert dev.asarray(x, dtype=None) is x  # already there: no copy
    dev.synchronize()


def test_to_numpy_of_reductions_and_scalars(dev):
    x = dev.asarray([1.0, 2.0])
    assert float(xpnet.to_numpy(dev.xp.sum(x))) == 3.0
    assert xpnet.to_numpy(2.5) == 2.5


def test_arrays_from_another_device_are_moved():
    strict = xpnet.device("cpu", backend="array-api-strict")
    x = strict.asarray([[1.0, 2.0]])
    y = xpnet.device("cpu").asarray(x)
    assert isinstance(y, np.ndarray) and y.tolist() == [[1.0, 2.0]]


def test_available_backends_reports_each():
    report = xpnet.available_backends()
    assert report["numpy"] == "ok" and set(report) == set(xpnet.BACKENDS)


def test_cuda_devices_names_the_cause_without_a_gpu(monkeypatch):
    monkeypatch.setattr(backend.LIBRARIES["cupy"], "cuda_status", lambda: (0, "no driver here"))
    assert backend.cuda_devices().startswith("none (CuPy: no driver here")


def test_every_backend_is_one_file_filling_the_protocol():
    """A backend is one file holding a :class:`~xpnet.backend.Backend`: the probe, the namespace and the
    transfers for its library; a CUDA one also waits for its queue and has a memory pool."""
    for name, lib in backend.LIBRARIES.items():
        assert isinstance(lib, backend.Backend) and lib.NAME == name
        assert type(lib).__module__ == f"xpnet.backend._{name.split('-')[-1]}"
        if "cuda" in lib.KINDS:
            hooks = ("synchronize", "memory_pool_bytes", "free_memory_pool")
            assert [h for h in hooks if getattr(type(lib), h) is getattr(backend.Backend, h)] == [], name


def test_the_protocol_requires_its_names_and_refuses_a_backend_without_one():
    """The required names are written down once, in ``Backend``: a backend lacking one cannot be made
    (so ``import xpnet`` fails naming it), and the optional hooks have defaults, never a missing name."""
    required = {"NAME", "KINDS", "missing", "cuda_status", "namespace", "native", "owns", "locate", "status"}
    assert backend.Backend.__abstractmethods__ == required
    lib = backend.LIBRARIES["array-api-strict"]
    attrs = {n: getattr(type(lib), n) for n in required - {"status"}}
    incomplete = type("Incomplete", (backend.Backend,), attrs)
    with pytest.raises(TypeError, match="abstract method '?status"):
        incomplete()
    whole = type("Whole", (backend.Backend,), {**attrs, "status": lambda self: "ok"})()
    assert whole.matmul_tn is None and whole.to_numpy(np.ones(1)) is None
    assert whole.memory_pool_bytes(None) is None and whole.nccl_allreduce(None, 0, 1, None) is None
    assert whole.nccl_gpu(None) is None and whole.prove(0) is None


@pytest.mark.parametrize("build, cupy_sees", [(None, 0), ("12.6", 0), (None, 1)],
                         ids=["cpu-only-build", "cuda-build-no-gpu", "cpu-only-build-cupy-sees-a-gpu"])
def test_torch_cuda_without_a_gpu_names_the_torch_fix(monkeypatch, build, cupy_sees):
    """backend="torch", device="cuda" where torch sees no GPU (simulated, so it runs on GPU machines too):
    the fix is PyTorch's (a CUDA build, or the driver), never "install CuPy"."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(backend.LIBRARIES["cupy"], "cuda_status",
                        lambda: (cupy_sees, "" if cupy_sees else "no CuPy GPU"))
    with pytest.raises(xpnet.DeviceUnavailableError) as info:
        xpnet.device("cuda", backend="torch")
    message = str(info.value)
    assert message.startswith(f"cuda:0 was requested but PyTorch {torch.__version__} ")
    assert "xpnet[cuda12]" not in message and "install CuPy" not in message
    if build is None:
        assert "is a CPU-only build, without CUDA. Fix: install a CUDA build of PyTorch" in message
        assert "--index-url https://download.pytorch.org/whl/cu" in message
    else:
        assert "(built for CUDA 12.6) sees no GPU. Fix: check that `nvidia-smi` lists a GPU" in message
    assert ("or use CuPy, which sees 1 GPU(s): --backend cupy" in message) == bool(cupy_sees)
    assert message.endswith("or run on the CPU with `--device cpu` / XPNET_DEVICE=cpu.")
    assert xpnet.device("auto", backend="torch").kind == "cpu"


# -- JAX: immutable arrays, 32 bits unless asked -----------------------------------------------------
def test_jax_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # makes `import jax` raise ImportError
    with pytest.raises(xpnet.DeviceUnavailableError, match=r"backend 'jax' cannot be used: JAX is not installed"
                                                            r".*pip install 'xpnet\[jax\]'"):
        xpnet.device("cpu", backend="jax")


def test_jax_device_arrays_and_immutability():
    pytest.importorskip("jax")
    from array_api_compat import is_writeable_array

    dev = xpnet.device("cpu", backend="jax")
    assert (dev.kind, dev.backend, str(dev)) == ("cpu", "jax", "cpu (jax)")
    assert backend.parse_backend("JAX") == backend.parse_backend("jnp") == "jax"
    x = dev.asarray([[1.0, 2.0]])
    assert dev.xp.__name__ == "jax.numpy" and xpnet.device_of(x) == dev
    assert not is_writeable_array(x)  # so optimizers and snapshots rebind instead of writing in place
    back = xpnet.to_numpy(x)
    back[0, 0] = 5.0  # a writeable host copy, like every other backend's
    assert xpnet.to_numpy(x).tolist() == [[1.0, 2.0]]


def test_jax_cuda_without_a_gpu_names_the_jax_fix():
    pytest.importorskip("jax")
    if backend.cuda_status("jax")[0]:
        pytest.skip("JAX sees a GPU here")
    with pytest.raises(xpnet.DeviceUnavailableError, match=r"cuda:0 was requested but JAX .* sees no GPU.*jax\[cuda"):
        xpnet.device("cuda", backend="jax")
    assert xpnet.device("auto", backend="jax").kind == "cpu"


_DEFAULT_JAX = """
import warnings, numpy as np, pytest, xpnet
from xpnet import Dense, ReLU, Sequential, SoftmaxCrossEntropy, SGD
warnings.simplefilter("error")  # JAX's own truncation warning would be a silent float32
with pytest.raises(ValueError, match="dtype 'float64' on the jax backend: .*JAX_ENABLE_X64=1"):
    Sequential([Dense(3, 2)], device="cpu", backend="jax", dtype="float64")
dev = xpnet.device("cpu", backend="jax")
with pytest.raises(ValueError, match="JAX_ENABLE_X64=1"):
    dev.asarray(np.ones(3), dtype=None)
with pytest.raises(ValueError, match="beyond 32 bits"):
    dev.asarray(np.array([2**40]), dtype=None)
rng = np.random.default_rng(0)
X, y = rng.normal(size=(64, 3)).astype(np.float32), rng.integers(0, 2, 64)  # int64 labels
model = Sequential([Dense(3, 8), ReLU(), Dense(8, 2)], device=dev, seed=0)
h = model.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.5), epochs=5, batch_size=16, verbose=0)
assert h["loss"][-1] < h["loss"][0]
assert all(p.dtype == dev.xp.float32 for p in model.parameters().values())
assert model.evaluate(X, y)["accuracy"] > 0.5
print("ok")
"""


def test_jax_default_mode_refuses_float64_and_trains_float32():
    """JAX's default (64-bit mode off; the test process turns it on in conftest): float64 is refused with
    the fix, never computed in float32; int64 labels become int32 without a warning; float32 trains."""
    pytest.importorskip("jax")
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XPNET_DEVICE", "XPNET_BACKEND")}
    proc = subprocess.run([sys.executable, "-c", _DEFAULT_JAX], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_a_device_pickles_by_description(dev):
    """scikit-learn's clone and joblib pickle an estimator's device= (a Device holds a module: not by value)."""
    import pickle

    again = pickle.loads(pickle.dumps(dev))
    assert again == dev and again.xp is dev.xp and str(again) == str(dev)
    x = again.asarray([1.0, 2.0])
    assert xpnet.device_of(x) == dev


def test_namespace_is_array_namespace_per_type(dev):
    """``backend.namespace`` caches ``array_namespace`` by array type: the same namespace for every array,
    scalar reduction and backend, whichever type was looked up first."""
    import array_api_compat

    for x in (dev.asarray([[1.0, 2.0]]), dev.asarray([1, 2], "int64"), dev.xp.sum(dev.asarray([1.0]))):
        assert backend.namespace(x) is array_api_compat.array_namespace(x)
    with pytest.raises(TypeError):
        backend.namespace(1.5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_outer_product_fast_path_equals_the_generic_product(dtype):
    """NumPy's ``matmul_tn`` (BLAS for one row) against the broadcast product Dense uses elsewhere: the same
    numbers bit for bit (one product per entry, nothing summed), dtype and shape; more rows are left to
    the generic ``x.T @ dy``."""
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(1, 9)).astype(dtype), rng.normal(size=(1, 4)).astype(dtype)
    fast = backend.routine(backend.namespace(x), "matmul_tn")
    got = fast(x, dy)
    assert got.dtype == np.dtype(dtype) and got.shape == (9, 4)
    np.testing.assert_array_equal(got, x.T * dy)
    assert fast(np.ones((2, 9), dtype), np.ones((2, 4), dtype)) is None
    strict = xpnet.device("cpu", backend="array-api-strict")
    assert backend.routine(strict.xp, "matmul_tn") is None  # no fast path: the generic code
