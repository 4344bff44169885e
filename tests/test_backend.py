"""Device selection and host/device transfer."""

from __future__ import annotations

import logging

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
    assert "pip install 'xpnet[cuda12]'" in message and "--device cpu" in message


def test_cuda_index_beyond_device_count_names_the_count(monkeypatch):
    monkeypatch.setattr(backend, "_cuda_status", lambda: (1, ""))
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
