"""The GPU code paths, checked on the CPU: what a CUDA run depends on but a CPU run cannot show by itself.

Read-backs are counted on array-api-strict, whose arrays reach the host only through a few methods (each
one a device sync on CUDA). Device contexts are checked with a recording stand-in for the current CUDA
device. Out-of-memory errors are raised by a fake exception class through a monkeypatched backend.
What only a GPU can show is in test_gpu.py (marker ``gpu``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy, training
import xpnet.train.backup

strict = pytest.importorskip("array_api_strict")

import opcount  # noqa: E402  (the read-back counter, shared with test_op_counts.py)


@pytest.fixture
def read_backs():
    """A list that gets one entry per read-back of an array-api-strict array, naming the door it took."""
    with opcount.host_reads() as seen:
        yield seen


def _classification(n=96, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, size=n)


@pytest.mark.parametrize("check_every", [3, 5])
def test_fit_reads_back_once_per_window_and_once_per_epoch_start(read_backs, check_every):
    # Parameters and buffers: BatchNorm adds running statistics to the finiteness check.
    X, y = _classification()
    model = Sequential([Dense(5, 8), xpnet.BatchNorm1d(8), ReLU(), Dense(8, 3)], device="cpu",
                       backend="array-api-strict", seed=0)
    epochs, batch = 2, 8

    class CountFromHere(xpnet.Callback):  # the data's own checks (finite? range?) run once per fit, before
        def on_train_begin(self, logs=None):
            read_backs.clear()

    training.fit(model, X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.05), epochs=epochs, batch_size=batch,
                 verbose=0, check_every=check_every, callbacks=[CountFromHere()])
    steps = -(-len(X) // batch)
    windows = -(-steps // check_every)
    # One per window (losses, hits and the weights' finiteness together) and one per epoch start (the
    # rollback's first snapshot checks all the weights in one read-back).
    assert len(read_backs) == epochs * (windows + 1), read_backs


def test_divergence_check_uses_the_window_flag(read_backs):
    # A window whose losses are finite but leaves the weights non-finite must not become the good copy.
    from xpnet.callbacks import DivergenceRollback
    from xpnet.callbacks.divergence import model_state

    model = Sequential([Dense(2, 2)], device="cpu", backend="array-api-strict", seed=0)
    cb = DivergenceRollback()
    cb.model = model
    cb.params = {"steps": 10}
    cb.on_epoch_begin(0)
    good = {k: xpnet.to_numpy(v).copy() for k, v in cb.good.items()}
    read_backs.clear()
    cb.on_batch_end(2, {"losses": np.array([1.0, 1.0, 1.0]), "state_finite": False})
    assert read_backs == []  # the flag came with the window: no read-back of its own
    for k, v in cb.good.items():
        np.testing.assert_array_equal(xpnet.to_numpy(v), good[k])
    assert model_state(model)  # the model itself is untouched


# -- device contexts ---------------------------------------------------------------------------------------
# What CuPy does on CUDA, played on NumPy: a "current device" that only Device.context() changes, and
# namespace functions that record which device was current when they ran. CuPy allocates there whatever
# device= says (array-api-compat #337) and refuses to launch a kernel on arrays of another device, so the
# creation functions and the usual kernels are recorded.
_RECORDED = ("asarray", "zeros", "zeros_like", "ones", "ones_like", "empty", "empty_like", "full", "full_like",
             "arange", "eye", "linspace", "matmul", "stack", "concat", "take", "astype", "sum", "max", "exp",
             "tanh", "log", "where", "all", "isfinite", "argmax")


class CurrentDevice:
    def __init__(self):
        self.stack, self.allocations = [], []

    @property
    def current(self):
        return self.stack[-1] if self.stack else None

    def context(self, dev):
        import contextlib

        @contextlib.contextmanager
        def entered():
            self.stack.append(str(dev))
            try:
                yield
            finally:
                self.stack.pop()
        return entered()


@pytest.fixture
def current_device(monkeypatch):
    import array_api_compat.numpy as cxp

    fake = CurrentDevice()
    monkeypatch.setattr(xpnet.backend.LIBRARIES["numpy"], "context", fake.context)
    for name in _RECORDED:
        original = getattr(cxp, name)

        def create(*args, _original=original, **kwargs):
            fake.allocations.append(fake.current)
            return _original(*args, **kwargs)

        monkeypatch.setattr(cxp, name, create)
    return fake


def _under_the_model_device(fake, what, run, works=True):
    fake.allocations.clear()
    result = run()
    assert bool(fake.allocations) == works, f"{what}: {len(fake.allocations)} recorded calls"
    outside = sum(a is None for a in fake.allocations)
    assert outside == 0, f"{what}: {outside} of {len(fake.allocations)} allocations ran outside the model's device"
    assert fake.current is None, f"{what} left a device current"
    return result


def test_every_operation_of_a_model_runs_under_its_device(current_device, tmp_path):
    fake = current_device
    X, y = _classification()
    model = _under_the_model_device(fake, "Sequential()", lambda: Sequential(
        [Dense(5, 8), xpnet.BatchNorm1d(8), ReLU(), Dense(8, 3)], device="cpu", seed=0))
    adam = xpnet.Adam(1e-2)
    _under_the_model_device(fake, "fit", lambda: model.fit(
        X, y, loss=SoftmaxCrossEntropy(), optimizer=adam, epochs=2, batch_size=16, verbose=0,
        validation_split=0.25, checkpoint_dir=tmp_path))
    _under_the_model_device(fake, "evaluate", lambda: model.evaluate(X, y))
    _under_the_model_device(fake, "predict", lambda: model.predict(X))
    _under_the_model_device(fake, "predict_proba", lambda: model.predict_proba(X))
    _under_the_model_device(fake, "predict_classes", lambda: model.predict_classes(X))
    _under_the_model_device(fake, "load_state_dict", lambda: model.load_state_dict(model.state_dict()))
    _under_the_model_device(fake, "to", lambda: model.to("cpu"), works=False)  # NumPy to NumPy: no call
    _under_the_model_device(fake, "optimizer state", lambda: adam.load_state_dict(adam.state_dict(),
                                                                                  model.parameters()))
    _under_the_model_device(fake, "load_checkpoint", lambda: xpnet.checkpoint.load_checkpoint(
        xpnet.train.backup.checkpoint_path(tmp_path), model))
    _under_the_model_device(fake, "fit(resume_from=)", lambda: model.fit(
        X, y, epochs=3, batch_size=16, verbose=0, resume_from=xpnet.train.backup.checkpoint_path(tmp_path)))


def test_the_tutorial_network_runs_under_its_device(current_device):
    from xpnet.tutorial import NeuralNetwork

    fake = current_device
    rng = np.random.default_rng(0)
    n = _under_the_model_device(fake, "NeuralNetwork()", lambda: NeuralNetwork(6, 5, 3, 0.1, seed=0,
                                                                               device=_fake_cuda_device()))
    x, t = rng.uniform(0.01, 1.0, size=6), np.full(3, 0.01)
    _under_the_model_device(fake, "train", lambda: [n.train(x, t) for _ in range(40)])  # the queue fills
    _under_the_model_device(fake, "train_batch", lambda: n.train_batch(np.stack([x, x]), np.stack([t, t])))
    _under_the_model_device(fake, "query", lambda: n.query(x))
    _under_the_model_device(fake, "backquery", lambda: n.backquery([0.99, 0.01, 0.01]))
    _under_the_model_device(fake, "wih =", lambda: setattr(n, "wih", np.zeros((5, 6))))


def _fake_cupy(monkeypatch):
    """A stand-in ``cupy`` module whose ``cuda.Device`` logs ``use()``, ``with`` entries and exits."""
    import sys
    import types

    log = []

    class FakeCudaDevice:
        def __init__(self, index=0):
            self.id = index

        def use(self):
            log.append(("use", self.id))

        def __enter__(self):
            log.append(("enter", self.id))
            return self

        def __exit__(self, *exc):
            log.append(("exit", self.id))

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(Device=FakeCudaDevice)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return log


def test_cupy_devices_never_change_the_current_device_for_good(monkeypatch):
    from xpnet.backend import Device

    log = _fake_cupy(monkeypatch)
    native = xpnet.backend.LIBRARIES["cupy"].native("cuda", 1, None)
    assert log == []  # making cuda:1 does not make it current for the whole process (no .use())
    dev = Device("cuda", 1, "cupy", None, native)
    with dev.context() as entered:
        with dev.context() as again:
            # the device's own object, no new one per call: CuPy >= 14 keeps what to restore per thread
            assert again is entered is native
    assert log == [("enter", 1), ("enter", 1), ("exit", 1), ("exit", 1)]


def test_cupy_asarray_is_compats_which_enters_the_device(monkeypatch):
    """Host data reaches cuda:N by array-api-compat's ``asarray(host, device=)``, which makes N current
    around CuPy's copy (CuPy copies to the current device): no CuPy-specific transfer code in xpnet."""
    pytest.importorskip("cupy")
    import cupy

    import array_api_compat.cupy as cxp

    log = []

    class Recorded:  # cupy.cuda.Device: Device(Device(1)) is device 1, by int()
        def __init__(self, index=None):
            self.id = None if index is None else int(index)

        def __int__(self):
            return self.id

        def __enter__(self):
            log.append(("enter", self.id))

        def __exit__(self, *exc):
            log.append(("exit", self.id))

    monkeypatch.setattr(cupy.cuda, "Device", Recorded)
    monkeypatch.setattr(cupy, "asarray", lambda obj, dtype=None: log.append(("copy", obj.tolist())) or obj)
    dev = xpnet.Device("cuda", 1, "cupy", cxp, Recorded(1))
    dev.asarray([1.0, 2.0])
    assert log == [("enter", 1), ("copy", [1.0, 2.0]), ("exit", 1)]


class _CudaDLPack:
    """A CUDA array as DLPack shows it: it exports to the host only when the host is asked for (CuPy >= 14
    then copies by ``get()``); handed on as is, NumPy could not read its memory."""

    def __init__(self, host):
        self.host, self.asked = host, []

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self.asked.append(dl_device)
        if dl_device != (1, 0):
            raise BufferError("a CUDA array exports to the host only when dl_device=(kDLCPU, 0) is asked")
        return self.host.copy().__dlpack__(max_version=max_version)


def test_a_cuda_array_comes_back_through_dlpack_asking_for_the_host():
    x = _CudaDLPack(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(xpnet.to_numpy(x), x.host)
    assert x.asked == [(1, 0)]


def test_torch_context_is_the_cuda_device_on_cuda_and_nothing_on_the_cpu():
    torch = pytest.importorskip("torch")
    import contextlib

    from xpnet.backend import Device

    cpu = xpnet.device("cpu", backend="torch")
    assert isinstance(cpu.context(), contextlib.nullcontext)
    cuda1 = Device("cuda", 1, "torch", cpu.xp, torch.device("cuda", 1))
    ctx = cuda1.context()  # not entered: there is no GPU here
    assert isinstance(ctx, torch.cuda.device) and ctx.idx == 1


# -- out of memory -----------------------------------------------------------------------------------------
class FakeOutOfMemory(Exception):
    """What cupy.cuda.memory.OutOfMemoryError / torch.OutOfMemoryError are to the handler."""


class CUBLASError(RuntimeError):
    """What CuPy raises when cuBLAS cannot allocate its handle or workspace: ``CUBLASError(3)``, whose
    message is the status's name alone (cupy_backends/cuda/libs/cublas.pyx)."""


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError and torch.OutOfMemoryError go by this name."""


@pytest.mark.parametrize("exc, oom", [
    (CUBLASError("CUBLAS_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),  # torch
    (RuntimeError("CURAND_STATUS_ALLOCATION_FAILED"), True),
    (RuntimeError("CUDNN_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("CUFFT_ALLOC_FAILED"), True),
    (RuntimeError("CUDA_ERROR_OUT_OF_MEMORY: out of memory"), True),  # the driver API
    (RuntimeError("cudaErrorMemoryAllocation: out of memory"), True),  # the runtime API
    (OutOfMemoryError("Out of memory allocating 1,024 bytes (allocated so far: 0 bytes)."), True),
    (CUBLASError("CUBLAS_STATUS_NOT_INITIALIZED"), False),
    (CUBLASError("CUBLAS_STATUS_EXECUTION_FAILED"), False),
    (ValueError("shapes (3, 4) and (5, 6) not aligned"), False),
    (xpnet.DeviceOutOfMemoryError("predict: out of memory on cuda:0 ... even for one row"), False),  # explained
], ids=lambda v: v if isinstance(v, bool) else str(v).split(":")[0][:40])
def test_out_of_memory_is_known_by_what_each_library_says(exc, oom):
    assert xpnet.backend.is_out_of_memory(exc) is oom


class RowLimit(xpnet.Identity):
    """Passes x through, but "runs out of memory" on more than ``limit`` rows, right after allocating a
    temporary that only its frame holds (as a real failed step's intermediates)."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.batches, self.temporary = limit, [], None
        self.error = lambda rows: FakeOutOfMemory(f"out of memory allocating {rows} rows")

    def forward(self, x, training=False):
        import weakref

        if x.shape[0] > self.limit:
            temporary = np.zeros((x.shape[0], 4), dtype=np.float32)
            self.temporary = weakref.ref(temporary)
            raise self.error(x.shape[0])
        self.batches.append(x.shape[0])
        return x


@pytest.fixture
def fake_oom(monkeypatch):
    """Make FakeOutOfMemory an out-of-memory error to xpnet; log each pool free with whether the failed
    batch's temporary was already released by then (a free before that gives nothing back)."""
    from xpnet import backend

    frees = []
    monkeypatch.setattr(backend, "is_out_of_memory",
                        lambda exc: isinstance(exc, FakeOutOfMemory))
    return frees


def _oom_model(limit, monkeypatch, frees):
    from xpnet import backend

    layer = RowLimit(limit)
    model = Sequential([Dense(5, 4), layer, Dense(4, 3)], device="cpu", seed=0)
    model.loss = SoftmaxCrossEntropy()
    monkeypatch.setattr(backend, "free_memory_pool", lambda dev: frees.append(
        (str(dev), layer.temporary is not None and layer.temporary() is None)))
    return model, layer


def test_predict_and_evaluate_halve_the_batch_and_go_on(fake_oom, monkeypatch):
    X, y = _classification(n=50)
    model, layer = _oom_model(1000, monkeypatch, fake_oom)
    want_out, want_eval = xpnet.to_numpy(model.predict(X)), model.evaluate(X, y)
    layer.limit = 7
    layer.batches.clear()
    with pytest.warns(UserWarning) as said:
        got = xpnet.to_numpy(model.predict(X, batch_size=64))
    assert [str(w.message).split(" with ", 1)[1] for w in said] == [
        "batch_size=50; going on with batch_size=25", "batch_size=25; going on with batch_size=12",
        "batch_size=12; going on with batch_size=6"]
    assert all(str(w.message).startswith("predict: out of memory on cpu (numpy)") for w in said)
    np.testing.assert_allclose(got, want_out, rtol=1e-6)
    assert layer.batches == [6] * 8 + [2]  # 50 -> 25 -> 12 -> 6, then rows 48..50
    assert fake_oom == [("cpu (numpy)", True)] * 3  # freed each time, after the failed batch was released
    with pytest.warns(UserWarning) as said:
        got_eval = model.evaluate(X, y, batch_size=64)
    assert len(said) == 3 and all(str(w.message).startswith("evaluate: out of memory") for w in said)
    assert got_eval == pytest.approx(want_eval, rel=1e-6)


def test_a_cublas_allocation_failure_halves_the_batch_as_out_of_memory(monkeypatch):
    """cuBLAS failing to allocate its workspace is the device's memory running out: predict frees the pool
    and goes on with half the batch (the real is_out_of_memory here, not the fake_oom fixture's)."""
    frees = []
    model, layer = _oom_model(16, monkeypatch, frees)
    layer.error = lambda rows: CUBLASError("CUBLAS_STATUS_ALLOC_FAILED")
    with pytest.warns(UserWarning) as said:
        model.predict(np.ones((40, 5), dtype=np.float32), batch_size=64)
    assert [str(w.message) for w in said] == [f"predict: out of memory on cpu (numpy) with batch_size={n}; going "
                                              f"on with batch_size={n // 2}" for n in (40, 20)]
    assert layer.batches == [10, 10, 10, 10] and len(frees) == 2


def test_predict_gives_up_at_one_row_saying_so(fake_oom, monkeypatch):
    model, _ = _oom_model(0, monkeypatch, fake_oom)
    with pytest.warns(UserWarning), pytest.raises(xpnet.DeviceOutOfMemoryError, match="even for one row"):
        model.predict(np.ones((4, 5), dtype=np.float32))


def test_fit_says_a_batch_overflowed_and_frees_the_pool_after_releasing_it(fake_oom, monkeypatch):
    X, y = _classification(n=40)
    model, layer = _oom_model(8, monkeypatch, fake_oom)
    with pytest.raises(MemoryError, match=r"batch_size=16 \(epoch 1, step 1\).*smaller batch size") as info:
        model.fit(X, y, loss=SoftmaxCrossEntropy(), epochs=1, batch_size=16, verbose=0)
    assert isinstance(info.value, xpnet.DeviceOutOfMemoryError)
    assert fake_oom == [("cpu (numpy)", True)]  # the pool freed once the failed step's arrays were gone


def test_fit_says_the_data_upload_overflowed(fake_oom, monkeypatch):
    X, y = _classification(n=40)
    model, _ = _oom_model(1000, monkeypatch, fake_oom)

    def upload(xp, host, native):
        raise FakeOutOfMemory("out of memory allocating 160 bytes")

    monkeypatch.setattr(xpnet.backend.LIBRARIES["numpy"], "asarray", upload)
    with pytest.raises(MemoryError, match=r"while moving the data there \(\(40, 5\) float32.*a smaller batch "
                                          r"size would not help"):
        model.fit(X, y, loss=SoftmaxCrossEntropy(), epochs=1, batch_size=16, verbose=0)
    with pytest.raises(MemoryError, match="predict: out of memory .* while moving the data"):
        model.predict(X)


# -- CUDA present or not: the probe's causes and fixes ------------------------------------------------------
class FakeRuntime:
    def __init__(self, count=1, driver=12040, runtime=12090, count_error=None):
        self.count, self.driver, self.runtime, self.count_error = count, driver, runtime, count_error

    def getDeviceCount(self):
        if self.count_error is not None:
            raise RuntimeError(self.count_error)
        return self.count

    def driverGetVersion(self):
        return self.driver

    def runtimeGetVersion(self):
        return self.runtime


def _cupy_with(monkeypatch, runtime: FakeRuntime, matmul_error: str | None = None, failing=None):
    """A fake ``cupy`` (NumPy inside) whose driver and libraries behave as told: the matmul fails with
    ``matmul_error`` on the devices in ``failing`` (default: all). Returns the log of matmuls and where."""
    devices = _fake_cupy(monkeypatch)
    import sys

    cupy = sys.modules["cupy"]
    calls = []

    def matmul(a, b):
        current = [i for what, i in devices if what == "enter"][-1]  # the probe enters one device at a time
        calls.append(f"matmul on cuda:{current}")
        if matmul_error and (failing is None or current in failing):
            raise RuntimeError(matmul_error)
        return a @ b

    class ElementwiseKernel:
        def __init__(self, *args):
            pass

        def __call__(self, x):
            return 2 * x + 1

    cupy.__version__ = "14.2.0"
    cupy.float32 = np.float32
    cupy.full = np.full
    cupy.matmul = matmul
    cupy.ElementwiseKernel = ElementwiseKernel
    cupy.cuda.runtime = runtime
    xpnet.backend.LIBRARIES["cupy"].prove.cache_clear()
    return calls


@pytest.fixture
def fresh_proof():
    """The proof is cached per process: start and end each test with none."""
    xpnet.backend.LIBRARIES["cupy"].prove.cache_clear()
    yield
    xpnet.backend.LIBRARIES["cupy"].prove.cache_clear()


def _auto_and_explicit(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="xpnet"):
        dev = xpnet.device("auto", backend=None)
    with pytest.raises(xpnet.DeviceUnavailableError) as info:
        xpnet.device("cuda")
    said = [r.getMessage() for r in caplog.records if "device auto" in r.getMessage()]
    assert dev.kind == "cpu" and len(said) == 1
    return said[0], str(info.value)


@pytest.mark.parametrize("runtime, cause, fix", [
    (FakeRuntime(driver=0, count_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient"),
     "finds no NVIDIA driver", "install its driver"),
    (FakeRuntime(driver=11080, count_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient"),
     "supports CUDA 11.8, older than the CUDA 12.9", "update the NVIDIA driver"),
    (FakeRuntime(count_error="cudaErrorNoDevice: no CUDA-capable device is detected"),
     "sees no usable CUDA device", "`nvidia-smi` lists a GPU"),
    (FakeRuntime(count=0), "sees no usable CUDA device", "`nvidia-smi` lists a GPU"),
], ids=["no-driver", "old-driver", "no-device", "zero-devices"])
def test_cupy_without_a_usable_gpu_says_what_is_wrong(monkeypatch, caplog, fresh_proof, runtime, cause, fix):
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _cupy_with(monkeypatch, runtime)
    auto, explicit = _auto_and_explicit(caplog)
    assert "-> cpu, because" in auto and cause in auto
    assert cause in explicit and fix in explicit and "--device cpu" in explicit
    assert "pip install 'xpnet[cuda12]'" not in explicit or "old" in cause  # not "install CuPy": it is there


def test_auto_proves_cuda_computes_before_picking_it_and_names_the_missing_library(monkeypatch, caplog,
                                                                                   fresh_proof):
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
    calls = _cupy_with(monkeypatch, FakeRuntime(count=2),
                       matmul_error='Failure finding "libcublasLt.so.12 or libcublasLt.so.13"')
    auto, explicit = _auto_and_explicit(caplog)
    assert "cannot compute on it: the CUDA library libcublasLt.so.12 is missing" in auto
    assert "libcublasLt.so.12 is missing" in explicit and "cupy-cuda12x[ctk]" in explicit
    assert calls == ["matmul on cuda:0"]  # proved once per process, not once per device() call


def test_a_working_gpu_is_proved_once(monkeypatch, fresh_proof):
    calls = _cupy_with(monkeypatch, FakeRuntime(count=2))
    assert [xpnet.backend.cuda_status() for _ in range(3)] == [(2, "")] * 3
    assert calls == ["matmul on cuda:0"]


def test_the_cuda_device_asked_for_is_proved_itself(monkeypatch, fresh_proof):
    """cuda:0 computes but cuda:1, the one asked for, cannot (another job holds all its memory, say): the
    request is refused naming cuda:1 and its error, not accepted on cuda:0's proof."""
    calls = _cupy_with(monkeypatch, FakeRuntime(count=2), failing=(1,),
                       matmul_error="cudaErrorMemoryAllocation: out of memory")
    assert xpnet.backend.cuda_status() == (2, "")
    with pytest.raises(xpnet.DeviceUnavailableError) as info:
        xpnet.device("cuda:1")
    assert str(info.value).startswith("cuda:1 was requested but CuPy sees cuda:1 but cannot compute on it: a CUDA "
                                      "library failed (RuntimeError: cudaErrorMemoryAllocation: out of memory)")
    assert "Fix: check cuda:1 with `nvidia-smi` (is its memory taken?)" in str(info.value)
    assert "--device cpu" in str(info.value)
    assert calls == ["matmul on cuda:0", "matmul on cuda:1"]


def test_the_real_cupy_without_a_driver_says_so():
    """With the CuPy wheel installed on a machine without an NVIDIA driver (CI's optional step, a laptop)."""
    pytest.importorskip("cupy")
    from xpnet import backend

    count, why = backend.cuda_status()
    if count:
        pytest.skip("a CUDA GPU is usable here")
    assert "install CuPy" not in why.fix and "Fix:" in why.fix
    with pytest.raises(xpnet.DeviceUnavailableError, match="--device cpu") as info:
        xpnet.device("cuda")
    assert "CuPy" in str(info.value) and "is not installed" not in str(info.value)


def test_the_cuda_extras_bring_the_cuda_libraries():
    import pathlib
    import tomllib

    extras = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for major in ("12", "13"):
        # CuPy's ctk extra: cuBLAS, NVRTC, ... as NVIDIA's wheels (the bare CuPy wheel has none of them)
        assert any(req.replace(" ", "").startswith(f"cupy-cuda{major}x[ctk]") for req in extras[f"cuda{major}"])


# -- per-device defaults -----------------------------------------------------------------------------------
def _fake_cuda_device():
    """A Device that says cuda:0 but computes with NumPy: what code that asks ``dev.kind`` sees on a GPU."""
    cpu = xpnet.device("cpu")
    return xpnet.Device("cuda", 0, "numpy", cpu.xp, cpu.native)


@pytest.mark.parametrize("model, told", [("tutorial", True), ("mlp", False)])
def test_cli_says_once_that_batch_1_on_cuda_is_slow(monkeypatch, capsys, model, told):
    from xpnet import backend, cli

    real = backend.device
    monkeypatch.setattr(backend, "device", lambda spec=None, backend=None: (
        _fake_cuda_device() if spec in ("cuda", None) else real(spec, backend)))
    code = cli.main(["train", "--dataset", "spirals", "--model", model, "--epochs", "1", "--device", "cuda"])
    out, err = capsys.readouterr()
    assert code == 0, err
    notes = [line for line in err.splitlines() if "batch 1" in line]
    assert len(notes) == (1 if told else 0), err
    if told:
        assert "on cuda:0" in notes[0] and "--batch-size 128" in notes[0]


def test_the_tutorial_applies_its_queue_in_one_gemm_on_cuda(monkeypatch):
    from xpnet import deferred

    import array_api_compat.numpy as cxp

    products = []
    original = cxp.matmul
    monkeypatch.setattr(cxp, "matmul", lambda a, b: products.append(a.shape) or original(a, b))
    for dev, blocks in ((xpnet.device("cpu"), -(-200 // deferred.DeferredMatrix.block_rows)),
                        (_fake_cuda_device(), 1)):
        w = dev.asarray(np.zeros((200, 30)))
        m = deferred.DeferredMatrix(w, 4, dev)
        for _ in range(3):
            m.add_outer(dev.asarray(np.ones(200)), dev.asarray(np.ones(30)))
        products.clear()
        assert float(m.array()[0, 0]) == 3.0
        assert len(products) == blocks, (str(dev), products)


# -- ci/gpu.sh on a machine without a GPU ------------------------------------------------------------------
@pytest.mark.parametrize("nvidia_smi", [None, "exit 9", "echo 'No devices were found'; exit 6"],
                         ids=["missing", "failing", "no-gpu"])
def test_gpu_script_without_a_gpu_says_so_in_one_line_and_exits_0(tmp_path, nvidia_smi):
    import pathlib
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "grep", "sed", "head", "cat", "env"):  # what the script may call before it stops
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if nvidia_smi is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!{bash}\n{nvidia_smi}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    script = pathlib.Path(__file__).parents[1] / "ci" / "gpu.sh"
    done = subprocess.run([bash, str(script)], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ci/gpu.sh: no NVIDIA GPU here"), done.stdout
    assert not (tmp_path / ".venv-gpu").exists()


def test_gpu_script_with_the_python_at_hand_names_what_that_python_lacks(tmp_path):
    """XPNET_GPU_PYTHON (a lent GPU machine without internet) installs nothing; a missing package is named."""
    import pathlib
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "grep", "sed", "head", "cat", "env", "mkdir", "rm", "mktemp"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    (bin_dir / "nvidia-smi").write_text(f"#!{bash}\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    (bin_dir / "python-at-hand").write_text(f"#!{bash}\necho 'cupy pooch'\n")  # what its module probe prints
    for name in ("nvidia-smi", "python-at-hand"):
        (bin_dir / name).chmod(0o755)
    script = pathlib.Path(__file__).parents[1] / "ci" / "gpu.sh"
    done = subprocess.run([bash, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path), "XPNET_GPU_PYTHON": "python-at-hand"})
    assert done.returncode == 1
    assert "XPNET_GPU_PYTHON=python-at-hand lacks cupy pooch" in done.stderr, done.stderr
    assert not (pathlib.Path(script).parents[1] / ".venv-gpu").exists()
    # the report says so too (the default folder is ./gpu-report, where the script was started)
    assert (tmp_path / "gpu-report" / "report.md").read_text().startswith(
        "# GPU verdict: FAIL: setup: XPNET_GPU_PYTHON=python-at-hand lacks cupy pooch")


# -- GPU memory figures that compare -----------------------------------------------------------------------
class _Pool:
    """A GPU memory pool as each library reports it: 5 MiB held now (2 MiB of it in live arrays), 8 MiB
    held at its peak, before the last free."""

    def __init__(self):
        self.held, self.live, self.peak = 5 << 20, 2 << 20, 8 << 20

    def free_all_blocks(self):  # CuPy's MemoryPool; torch's empty_cache() below
        self.held = self.live

    def total_bytes(self):
        return self.held

    def memory_stats(self):  # a JAX device (XLA's allocator statistics)
        return {"pool_bytes": self.held, "bytes_in_use": self.live, "peak_pool_bytes": self.peak,
                "peak_bytes_in_use": self.peak}


def _pool_device(library, monkeypatch):
    """A cuda:0 Device of ``library`` whose pool is a :class:`_Pool` (no GPU, no CuPy needed)."""
    import contextlib
    import sys
    import types

    pool = _Pool()
    if library == "cupy":
        _fake_cupy(monkeypatch)
        sys.modules["cupy"].get_default_memory_pool = lambda: pool
        return xpnet.Device("cuda", 0, "cupy", None, sys.modules["cupy"].cuda.Device(0))
    if library == "jax":
        return xpnet.Device("cuda", 0, "jax", None, pool)
    torch = pytest.importorskip("torch")
    for name, field in (("memory_reserved", "held"), ("memory_allocated", "live"), ("max_memory_reserved", "peak"),
                        ("max_memory_allocated", "peak")):
        monkeypatch.setattr(torch.cuda, name, lambda device=None, _f=field: getattr(pool, _f))
    monkeypatch.setattr(torch.cuda, "empty_cache", pool.free_all_blocks)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    return xpnet.Device("cuda", 0, "torch", types.SimpleNamespace(), torch.device("cuda", 0))


@pytest.mark.parametrize("library", ["cupy", "torch", "jax"])
def test_the_pool_figure_is_what_the_pool_holds_now_on_every_library(monkeypatch, library):
    """The same figure everywhere, so CuPy's compares with torch's: what the pool holds now (arrays and
    cache: CuPy's total_bytes(), torch's reserved, XLA's pool_bytes), neither a peak nor the live bytes."""
    dev = _pool_device(library, monkeypatch)
    assert xpnet.backend.memory_pool_bytes(dev) == 5 << 20
    if library != "jax":  # (JAX frees a buffer when nothing holds it: its free_memory_pool clears compiled code)
        xpnet.backend.free_memory_pool(dev)
        assert xpnet.backend.memory_pool_bytes(dev) == 2 << 20  # the cache went back to the driver


def test_bench_compares_gpu_memory_held_with_held():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_mlp.py"
    spec = importlib.util.spec_from_file_location("bench_mlp_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    timing = {"seconds_per_epoch": 1.0, "best_seconds_per_epoch": 1.0, "all_seconds_per_epoch": [1.0]}
    rows = {"xpnet:cupy": {"runner": "xpnet (cupy)", **timing, "gpu_held_bytes": 300, "gpu_used_peak_bytes": None},
            "torch": {"runner": "torch", **timing, "gpu_held_bytes": 200, "gpu_used_peak_bytes": 100}}
    (q,) = bench.ratios(rows)
    assert q["gpu_memory"] == pytest.approx(1.5)  # 300 held / 200 reserved, not / 100 allocated


def test_the_gpu_tests_skip_with_the_probes_reason(tmp_path):
    """With CuPy installed and no GPU (CI's optional step): `pytest -m gpu` skips, saying what is missing."""
    pytest.importorskip("cupy")
    import pathlib
    import subprocess
    import sys

    from xpnet import backend

    count, why = backend.cuda_status()
    if count:
        pytest.skip("a CUDA GPU is usable here")
    root = pathlib.Path(__file__).parents[1]
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-rs", "-q", "-p", "no:cacheprovider",
                           str(root / "tests" / "test_gpu.py")], capture_output=True, text=True, timeout=300,
                          cwd=root)
    assert done.returncode == 0, done.stdout[-2000:]
    assert f"needs a CUDA GPU with CuPy: {why}" in done.stdout and " passed" not in done.stdout


# -- the CNN benchmark on CUDA (issue 13), as far as a machine without a GPU can check it -----------------------
def test_cnn_bench_on_cuda_without_a_gpu_says_why_in_one_line(tmp_path):
    """``bench_cnn.py --device cuda`` where CUDA cannot be had: the device's reason and exit 2, not two
    worker processes that die with a traceback each."""
    import pathlib
    import subprocess
    import sys

    from xpnet import backend

    if backend.cuda_count("cupy") > 0:
        pytest.skip("a CUDA GPU is here: the benchmark would run")
    root = pathlib.Path(__file__).parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_cnn.py"), "--device", "cuda",
                           "--no-memory"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("bench_cnn.py: --device cuda: ") and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
