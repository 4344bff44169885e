"""The training loop's order and its safety net, observed from outside.

Shuffling: a layer and a loss that record what they are given show that ``fit`` keeps each (x, y) pair
together, draws a new order every epoch, repeats it for the same seed, and trains on exactly that order
(the weights equal a NumPy loop run over the recorded order). Divergence: a run whose loss overflows
after more than one read-back window keeps the weights from before the window where it overflowed,
computed here by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import MSE, SGD, Dense, Identity, Sequential, TrainingDiverged, to_numpy
from xpnet import training

import numpy_reference as ref


class RecordInputs(Identity):
    """Passes x through; remembers the first column of every training batch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, training=False):
        if training:
            self.seen.append(to_numpy(x)[:, 0].astype(np.float64).copy())
        return x


class RecordTargets(MSE):
    """MSE that remembers the first target column of every batch."""

    def __init__(self):
        self.seen = []

    def forward(self, pred, target):
        self.seen.append(to_numpy(target).reshape(target.shape[0], -1)[:, 0].astype(np.float64).copy())
        return super().forward(pred, target)


N, BATCH, EPOCHS = 40, 8, 3


def _data():
    X = np.zeros((N, 3), dtype=np.float32)
    X[:, 0] = np.arange(N)
    X[:, 1:] = np.random.default_rng(0).normal(size=(N, 2))
    y = np.stack([2 * X[:, 0] + 1, -X[:, 0]], axis=1).astype(np.float32)  # y follows from x[0]
    return X, y


def _fit(dev, seed=0, shuffle=True, epochs=EPOCHS, lr=1e-4):
    X, y = _data()
    inputs, loss = RecordInputs(), RecordTargets()
    model = Sequential([inputs, Dense(3, 2)], device=dev, seed=seed)
    start = model.state_dict()
    model.fit(X, y, loss=loss, optimizer=SGD(lr), epochs=epochs, batch_size=BATCH, shuffle=shuffle, verbose=0)
    orders = [np.concatenate(inputs.seen[e * (N // BATCH):(e + 1) * (N // BATCH)]) for e in range(epochs)]
    return model, start, inputs, loss, [o.astype(np.int64) for o in orders]


def test_shuffle_keeps_pairs_and_changes_the_order_every_epoch(dev):
    _, _, inputs, loss, orders = _fit(dev)
    for xs, ts in zip(inputs.seen, loss.seen):
        np.testing.assert_array_equal(ts, 2 * xs + 1)  # each target travelled with its own x
    for e, order in enumerate(orders):
        assert sorted(order.tolist()) == list(range(N)), f"epoch {e} is not a permutation"
        assert order.tolist() != list(range(N)), f"epoch {e} was not shuffled"
    assert len({tuple(o) for o in orders}) == EPOCHS, "an epoch repeated the previous order"


def test_shuffle_is_reproducible_from_the_seed(dev):
    a = _fit(dev, seed=5)[4]
    b = _fit(dev, seed=5)[4]
    c = _fit(dev, seed=6)[4]
    assert [o.tolist() for o in a] == [o.tolist() for o in b]
    assert [o.tolist() for o in a] != [o.tolist() for o in c]


def test_no_shuffle_keeps_the_order(dev):
    *_, orders = _fit(dev, shuffle=False)
    for order in orders:
        assert order.tolist() == list(range(N))


def test_training_follows_the_shuffled_order(dev):
    """The weights after a shuffled epoch are those of plain SGD over the recorded order, and differ from
    the weights of an unshuffled epoch."""
    lr = 1e-3
    model, start, _, _, (order,) = _fit(dev, epochs=1, lr=lr)
    unshuffled = _fit(dev, shuffle=False, epochs=1, lr=lr)[0].state_dict()
    X, y = _data()
    layers = [("dense", start["1.W"].astype(np.float64), start["1.b"].astype(np.float64))]
    ref.train_steps(layers, X[order].astype(np.float64), y[order].astype(np.float64), ref.mse, "sgd",
                    steps=N // BATCH, batch=BATCH, lr=lr)
    got = model.state_dict()
    np.testing.assert_allclose(got["1.W"], layers[0][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["1.b"], layers[0][2], rtol=1e-5, atol=1e-6)
    assert np.abs(got["1.W"] - unshuffled["1.W"]).max() > 1e-3


# -- divergence ------------------------------------------------------------------------------------
# One weight and one bias from zero, x = 1, target 1, lr 1.25, batch 1: the residual is multiplied by
# 1 - lr (x^2 + 1) = -1.5 each step, so the float32 loss overflows at step 110: in the third
# window of 50 steps, or the sixteenth of 7.
LR = 1.25


def _reference_weights(steps):
    """(w, b) after ``steps`` SGD steps, in float64."""
    w = b = 0.0
    for _ in range(steps):
        w, b = w - LR * (w + b - 1.0), b - LR * (w + b - 1.0)
    return w, b


def _first_bad_step():
    """The first step whose loss 1/2 r^2 is not finite in float32 (r^2 overflows first)."""
    for k in range(400):
        w, b = _reference_weights(k)
        r = np.float32(w + b - 1.0)
        with np.errstate(over="ignore"):
            if not np.isfinite(r * r):  # xpnet squares first, then halves
                return k
    raise AssertionError("the scenario never diverges")


@pytest.mark.parametrize("n, check_every", [(200, None), (200, 7), (60, 7)],
                         ids=["default-window-50", "window-7", "window-7-second-epoch"])
def test_divergence_restores_the_weights_from_before_the_window(dev, n, check_every):
    model = Sequential([Dense(1, 1, init="zeros")], device=dev, seed=0)
    X, y = np.ones((n, 1), np.float32), np.ones((n, 1), np.float32)
    kwargs = dict(loss=MSE(), optimizer=SGD(LR), epochs=3, batch_size=1, shuffle=False, verbose=0)
    with pytest.raises(TrainingDiverged) as info:
        if check_every is None:
            model.fit(X, y, **kwargs)
        else:
            training.fit(model, X, y, check_every=check_every, **kwargs)
    bad = _first_bad_step()
    window = check_every or 50
    epoch, step = divmod(bad, n)
    restored = epoch * n + step // window * window  # the global step the restored weights come from
    assert step // window >= 2, "the scenario must diverge after more than one window"
    err = info.value
    assert (err.epoch, err.step, err.restored_step) == (epoch, step, step // window * window)
    w, b = _reference_weights(restored)
    got = model.state_dict()
    # 1e-4: float32 rounding over ~100 steps; the weights one window earlier differ by a factor 1.5^7
    np.testing.assert_allclose([got["0.W"][0, 0], got["0.b"][0]], [w, b], rtol=1e-4)
