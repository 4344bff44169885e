"""The GPU code paths, checked on the CPU: what a CUDA run depends on but a CPU run cannot show by itself.

Read-backs are counted on array-api-strict, whose arrays reach the host only through a few methods (each
one a device sync on CUDA). Device contexts are checked with a recording stand-in for the current CUDA
device. Out-of-memory errors are raised by a fake exception class through a monkeypatched backend.
What only a GPU can show is in test_gpu.py (marker ``gpu``).
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy, training

strict = pytest.importorskip("array_api_strict")

# The ways an array-api-strict array reaches the host; on CUDA each one is a transfer and a sync.
_HOST_DOORS = ("__bool__", "__float__", "__int__", "__index__", "__dlpack__", "__array__", "tolist", "item")


@pytest.fixture
def read_backs(monkeypatch):
    """A list that gets one entry per read-back of an array-api-strict array, naming the door it took."""
    from array_api_strict._array_object import Array

    seen = []
    for name in _HOST_DOORS:
        original = getattr(Array, name, None)
        if original is None:
            continue

        def door(self, *args, _original=original, _name=name, **kwargs):
            seen.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, door)
    return seen


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
    from xpnet.callbacks import DivergenceRollback, _state

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
    assert _state(model)  # the model itself is untouched
