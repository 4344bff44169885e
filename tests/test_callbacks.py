"""The callback hooks fit calls: order, the per-window hook, stop_training, plain functions, and the helpers
in ``xpnet.inplace`` that every update goes through."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import MSE, SGD, Dense, Sequential, inplace, training
from xpnet.callbacks import Callback, EarlyStopping, History, LambdaCallback


class Recorder(Callback):
    def __init__(self, stop_at=None):
        self.events, self.stop_at = [], stop_at

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, step, logs=None):
        self.events.append(("batch_end", step, len(logs["losses"]), logs["samples"]))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))
        if epoch == self.stop_at:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.events.append(("train_end", sorted(logs)))


def _fit(callbacks, epochs=2, **kwargs):
    X = np.linspace(0, 1, 10, dtype=np.float32).reshape(10, 1)
    model = Sequential([Dense(1, 1)], device="cpu", seed=0)
    history = training.fit(model, X, 2 * X, loss=MSE(), optimizer=SGD(0.1), epochs=epochs, batch_size=3,
                           verbose=0, callbacks=callbacks, **kwargs)
    return model, history


def test_hooks_run_in_order_once_per_read_back_window():
    rec = Recorder()
    model, _ = _fit([rec], check_every=3)  # 4 steps per epoch (3+3+3+1 samples): windows end at steps 2 and 3
    epoch = [("batch_end", 2, 3, 9), ("batch_end", 3, 1, 10)]
    assert rec.events == [("train_begin",), ("epoch_begin", 0), *epoch, ("epoch_end", 0), ("epoch_begin", 1),
                          *epoch, ("epoch_end", 1), ("train_end", ["loss", "lr", "samples_per_s", "seconds"])]
    assert rec.model is model and rec.params == {"epochs": 2, "steps": 4, "samples": 10, "check_every": 3,
                                                 "verbose": 0}


def test_the_model_method_takes_the_read_back_window_too():
    rec = Recorder()
    X = np.linspace(0, 1, 10, dtype=np.float32).reshape(10, 1)
    model = Sequential([Dense(1, 1)], device="cpu", seed=0)
    model.fit(X, 2 * X, loss=MSE(), optimizer=SGD(0.1), batch_size=3, verbose=0, callbacks=[rec], check_every=1)
    assert [e[1:] for e in rec.events if e[0] == "batch_end"] == [(0, 1, 3), (1, 1, 6), (2, 1, 9), (3, 1, 10)]


def test_stop_training_ends_after_the_epoch_and_every_callback_sees_it():
    first, second = Recorder(stop_at=0), Recorder()
    _, history = _fit([first, second], epochs=5)
    assert len(history["loss"]) == 1 and ("epoch_end", 0) in second.events


def test_plain_functions_are_wrapped():
    model, history = _fit([lambda epoch, logs: epoch == 2], epochs=5)
    assert len(history["loss"]) == 3
    assert repr(LambdaCallback(print)).startswith("LambdaCallback(")


def test_history_is_a_callback_and_fit_returns_a_fresh_one():
    _, a = _fit([])
    _, b = _fit([])
    assert isinstance(a, History) and isinstance(a, Callback) and a is not b and len(b["loss"]) == 2


@pytest.mark.parametrize("writeable", [True, False], ids=["in-place", "rebound"])
def test_add_and_copy_in_place_or_not(monkeypatch, writeable):
    monkeypatch.setattr(inplace, "is_writeable_array", lambda a: writeable)
    a = np.array([1.0, 2.0])
    out = inplace.add_(a, np.array([1.0, 1.0]), scale=2.0)
    np.testing.assert_array_equal(out, [3.0, 5.0])
    assert (out is a) == writeable
    b = np.zeros(2)
    c = inplace.copy_(b, out)
    np.testing.assert_array_equal(c, out)
    assert (c is b) == writeable and c is not out
    assert inplace.copy_(None, out) is not out


def test_early_stopping_keeps_the_first_watched_epochs_weights_even_when_not_finite():
    # Keras' rule: the first watched epoch stands in as the best (NaN weights and loss too) until one beats it.
    model = Sequential([Dense(2, 1)], device="cpu", seed=0)
    model.load_state_dict({k: np.full(v.shape, np.nan, dtype=np.float32) for k, v in model.parameters().items()})
    cb = EarlyStopping(monitor="loss", restore_best_weights=True)
    cb.model, cb.params = model, {"epochs": 2}
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": float("nan")})
    assert cb.best_weights is not None
    assert all(np.isnan(np.asarray(v)).all() for v in cb.best_weights.values())
