"""CUDA-only checks (marker ``gpu``; skipped cleanly without a GPU). Every other test also runs on
CuPy through the ``cupy-cuda0-float32`` entry of the ``dev`` fixture."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy, to_numpy

pytestmark = pytest.mark.gpu


def test_auto_and_explicit_cuda_pick_the_gpu():
    assert xpnet.device("auto").kind == "cuda"
    dev = xpnet.device("cuda:0")
    assert (dev.kind, dev.index, dev.backend) == ("cuda", 0, "cupy")


def _fit(dev, X, y):
    model = Sequential([Dense(20, 32), ReLU(), Dense(32, 4)], device=dev, seed=3)
    history = model.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), epochs=3, batch_size=16, verbose=0)
    return model, history


def test_cuda_training_matches_numpy():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(256, 20)).astype(np.float32), rng.integers(0, 4, size=256)
    cpu_model, cpu_hist = _fit(xpnet.device("cpu"), X, y)
    gpu_model, gpu_hist = _fit(xpnet.device("cuda"), X, y)
    # 48 SGD steps of a small net: changing only the matmuls' rounding on the CPU (ci/perturb_matmul.py's
    # float64-round and split-k, on array-api-strict) moves these losses by 2e-8 and the outputs by 4e-7,
    # so 1e-5 leaves a GPU's other reductions 500x room. Longer runs need more (ci/gpu_curves.py).
    np.testing.assert_allclose(gpu_hist["loss"], cpu_hist["loss"], rtol=1e-5)
    np.testing.assert_allclose(to_numpy(gpu_model.predict(X)), to_numpy(cpu_model.predict(X)), rtol=1e-4, atol=1e-5)


def test_model_moves_from_gpu_to_cpu_and_back():
    model = Sequential([Dense(3, 2)], device="cuda", seed=0)
    X = np.ones((2, 3), dtype=np.float32)
    ref = to_numpy(model.predict(X))
    model.to("cpu")
    np.testing.assert_array_equal(to_numpy(model.predict(X)), ref)
    model.to("cuda")
    assert model.device.kind == "cuda"


def test_out_of_memory_names_the_batch_and_gives_the_failed_step_back():
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    # Hidden activations of batch x width floats that cannot fit in what is free; the data itself fits.
    width = 4096
    batch = int(free // (4 * width)) * 2
    X = np.zeros((1, 8), dtype=np.float32)
    model = Sequential([Dense(8, width), ReLU(), Dense(width, 2)], device="cuda", seed=0)
    big = cupy.zeros((batch, 8), dtype=cupy.float32)
    with pytest.raises(xpnet.DeviceOutOfMemoryError, match=rf"batch_size={batch} \(epoch 1, step 1\)"):
        model.fit(big, np.zeros(batch, dtype=np.int64), loss=SoftmaxCrossEntropy(), epochs=1, batch_size=batch,
                  verbose=0)
    # The failed step's batch (batch x 8 floats, gathered by the shuffle) went back to the driver, not to
    # the pool's cache: without the handler it would sit there as free_bytes().
    assert cupy.get_default_memory_pool().free_bytes() == 0
    del big
    model.fit(np.repeat(X, 4, axis=0), np.zeros(4, dtype=np.int64), loss=SoftmaxCrossEntropy(), epochs=1,
              batch_size=4, verbose=0)  # and the process goes on


def test_predict_halves_its_batch_on_out_of_memory():
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    width = 4096
    rows = int(free // (4 * width)) + 1  # one batch of all rows cannot hold its hidden activations
    model = Sequential([Dense(8, width), ReLU(), Dense(width, 2)], device="cuda", seed=0)
    X = cupy.ones((rows, 8), dtype=cupy.float32)
    with pytest.warns(UserWarning, match="predict: out of memory"):
        out = model.predict(X, batch_size=rows)
    assert out.shape == (rows, 2)
    np.testing.assert_allclose(to_numpy(out[-3:]), to_numpy(model.predict(X[-3:])), rtol=1e-5)


def test_models_on_two_gpus_each_run_under_their_own():
    import threading

    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two CUDA devices")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 20)).astype(np.float32), rng.integers(0, 4, size=64)
    late = _fit(xpnet.device("cuda:1"), X, y)[0]
    early = _fit(xpnet.device("cuda:0"), X, y)[0]  # made after a cuda:1 model (was: "must be same as current")
    assert cupy.cuda.runtime.getDevice() == 0  # nothing made cuda:1 current for good
    found = {}

    def other_thread():  # its current device is cuda:0 (the default); the cuda:1 model must not care
        try:
            found["out"] = to_numpy(late.predict(X))
        except Exception as exc:
            found["error"] = exc

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert "error" not in found, found.get("error")
    assert early.predict(X).device.id == 0 and late.predict(X).device.id == 1


def test_jax_on_cuda_matches_numpy():
    pytest.importorskip("jax")
    if not xpnet.backend.cuda_status("jax")[0]:
        pytest.skip("this jaxlib sees no GPU (a CUDA build is `pip install 'jax[cuda12]'`)")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(256, 20)).astype(np.float32), rng.integers(0, 4, size=256)
    _, cpu_hist = _fit(xpnet.device("cpu"), X, y)
    dev = xpnet.device("cuda", backend="jax")
    assert (dev.kind, dev.backend) == ("cuda", "jax")
    _, jax_hist = _fit(dev, X, y)
    np.testing.assert_allclose(jax_hist["loss"], cpu_hist["loss"], rtol=1e-4)


def test_cli_trains_and_predicts_on_cuda(tmp_path, capsys):
    from xpnet import cli

    path = tmp_path / "spirals.npz"
    code = cli.main(["train", "--dataset", "spirals", "--epochs", "2", "--device", "cuda", "--save", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "cuda:0 (cupy)" in out and "batch 128" in out and "batch 1 " not in err
    code = cli.main(["evaluate", str(path), "--dataset", "spirals", "--device", "cuda"])
    out, err = capsys.readouterr()
    assert code == 0 and "cuda:0" in out, err
    code = cli.main(["info", "--device", "auto"])
    out, _ = capsys.readouterr()
    assert code == 0 and "cuda:0" in out
