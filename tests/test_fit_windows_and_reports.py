"""The training loop's bookkeeping, observed from outside: totals over several read-back windows, the
snapshot on arrays that cannot be written in place, the epoch line, the progress bar, the timings, the
defaults of ``training.fit`` and the texts of its errors.

References are float64 NumPy loops written here (one Dense layer: ``z = x W + b``, softmax
cross-entropy, plain SGD), never xpnet itself.
"""

from __future__ import annotations

import io
import re
import sys
import threading
import time
import types

import numpy as np
import pytest

import xpnet
from xpnet import MSE, SGD, Dense, Sequential, SoftmaxCrossEntropy, TrainingDiverged, inplace, training
from xpnet.training import History, format_epoch
from xpnet.train import trainer

N, FEATURES, CLASSES = 22, 4, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, FEATURES)).astype(np.float32), rng.integers(0, CLASSES, size=N)


def _reference_epoch(W, b, X, y, batch, lr):
    """One unshuffled SGD epoch of softmax cross-entropy on ``x W + b``: (W, b, mean loss, accuracy),
    the loss and hits taken from the outputs before each step, every sample weighted equally."""
    total, hits = 0.0, 0
    for lo in range(0, len(X), batch):
        xb, yb = X[lo:lo + batch].astype(np.float64), y[lo:lo + batch]
        z = xb @ W + b
        s = z - z.max(axis=1, keepdims=True)
        log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        total += -log_p[np.arange(len(yb)), yb].sum()
        hits += int((z.argmax(axis=1) == yb).sum())
        dz = (np.exp(log_p) - np.eye(CLASSES)[yb]) / len(yb)
        W, b = W - lr * xb.T @ dz, b - lr * dz.sum(axis=0)
    return W, b, total / len(X), hits / len(X)


@pytest.mark.parametrize("check_every", [1, 2, 50])
def test_epoch_loss_and_accuracy_add_up_over_every_window(dev, check_every):
    """22 samples in batches of 4 (five of 4, one of 2), read back every 1, 2 or 50 steps."""
    X, y = _data()
    model = Sequential([Dense(FEATURES, CLASSES)], device=dev, seed=0)
    W, b = (model.state_dict()[k].astype(np.float64) for k in ("0.W", "0.b"))
    history = training.fit(model, X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.5), epochs=2, batch_size=4,
                           shuffle=False, verbose=0, check_every=check_every)
    for epoch in range(2):
        W, b, loss, accuracy = _reference_epoch(W, b, X, y, 4, 0.5)
        assert history["loss"][epoch] == pytest.approx(loss, rel=1e-5)
        assert history["accuracy"][epoch] == pytest.approx(accuracy, abs=1e-12)
    np.testing.assert_allclose(model.state_dict()["0.W"], W, rtol=1e-5, atol=1e-6)


# -- divergence: the last window of an epoch, and arrays that cannot be written in place ------------------
LR = 1.25  # one weight and one bias from 0, x = 1, t = 1: the residual is multiplied by -1.5 each step


def _reference_weights(steps):
    w = b = 0.0
    for _ in range(steps):
        w, b = w - LR * (w + b - 1.0), b - LR * (w + b - 1.0)
    return w, b


def _first_bad_step():
    """The first step whose float32 loss 1/2 r^2 is not finite (xpnet squares, then halves)."""
    for k in range(400):
        r = np.float32(sum(_reference_weights(k)) - 1.0)
        with np.errstate(over="ignore"):
            if not np.isfinite(r * r):
                return k
    raise AssertionError("the scenario never diverges")


def _diverge(dev, n, check_every):
    model = Sequential([Dense(1, 1, init="zeros")], device=dev, seed=0)
    with pytest.raises(TrainingDiverged) as info:
        training.fit(model, np.ones((n, 1), np.float32), np.ones((n, 1), np.float32), loss=MSE(),
                     optimizer=SGD(LR), epochs=1, batch_size=1, shuffle=False, verbose=0, check_every=check_every)
    return model, info.value


def test_divergence_in_the_last_window_restores_the_snapshot_after_the_one_before(dev):
    """Windows of k steps in an epoch of k + 1 steps: the second (and last) window holds only step k, the
    first bad one, so the weights are those from after the first window, i.e. before step k."""
    k = _first_bad_step()
    model, err = _diverge(dev, k + 1, k)
    assert (err.epoch, err.step, err.restored_step) == (0, k, k)
    w, b = _reference_weights(k)
    got = model.state_dict()
    np.testing.assert_allclose([got["0.W"][0, 0], got["0.b"][0]], [w, b], rtol=1e-4)


def test_divergence_restores_the_right_weights_when_arrays_cannot_be_written(dev, monkeypatch):
    """On a library without in-place writes (JAX) each snapshot is a new set of copies, and it is the
    newest one that must be restored."""
    monkeypatch.setattr(inplace, "is_writeable_array", lambda a: False)
    k = _first_bad_step()
    window = 7
    model, err = _diverge(dev, k + 20, window)
    restored = k // window * window
    assert err.restored_step == restored
    w, b = _reference_weights(restored)
    got = model.state_dict()
    np.testing.assert_allclose([got["0.W"][0, 0], got["0.b"][0]], [w, b], rtol=1e-4)


def test_the_divergence_message_counts_from_one():
    err = TrainingDiverged(epoch=2, step=9, value=float("inf"), restored_step=7)
    assert str(err).startswith("training diverged: the loss was inf at epoch 3, step 10. The model keeps its last "
                               "finite weights (from before step 8 of that epoch). Try a lower learning rate")
    assert (err.epoch, err.step, err.value, err.restored_step) == (2, 9, float("inf"), 7)


# -- what fit prints ------------------------------------------------------------------------------
def test_format_epoch_with_and_without_validation():
    logs = {"loss": 0.123456, "accuracy": 0.25, "val_loss": 1.5, "val_accuracy": 0.75,
            "samples_per_s": 12345.6, "seconds": 1.234}
    assert format_epoch(0, 3, logs, "cpu") == ("epoch 1/3  loss 0.1235  train acc 0.2500  val loss 1.5000  "
                                               "val acc 0.7500  12,346 samples/s  1.23 s  cpu")
    assert format_epoch(0, 3, logs, "cpu", "test") == ("epoch 1/3  loss 0.1235  train acc 0.2500  test loss 1.5000  "
                                                       "test acc 0.7500  12,346 samples/s  1.23 s  cpu")
    short = {"loss": 2.0, "samples_per_s": 10.0, "seconds": 0.5}
    assert format_epoch(4, 5, short, "dev") == "epoch 5/5  loss 2.0000  10 samples/s  0.50 s  dev"
    top = {"loss": 2.0, "top_5_accuracy": 0.5, "val_top_5_accuracy": 0.25, "samples_per_s": 10, "seconds": 0.5}
    assert format_epoch(0, 1, top, "dev") == ("epoch 1/1  loss 2.0000  top 5 accuracy 0.5000  val top 5 accuracy "
                                              "0.2500  10 samples/s  0.50 s  dev")


def _fit_small(dev, **kwargs):
    X, y = _data()
    model = Sequential([Dense(FEATURES, CLASSES)], device=dev, seed=0)
    kwargs = {"loss": SoftmaxCrossEntropy(), "optimizer": SGD(0.1), "epochs": 2, "batch_size": 8, **kwargs}
    return model, model.fit(X, y, validation_data=(X[:10], y[:10]), **kwargs)


def test_verbose_prints_one_line_per_epoch(dev, capsys):
    model, history = _fit_small(dev, verbose=1)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and err == ""  # not a terminal: no progress bar on stderr
    for epoch, line in enumerate(lines):
        logs = {k: v[epoch] for k, v in history.history.items()}
        expected = format_epoch(epoch, 2, logs, model.device)
        # the timings are printed rounded: compare the line up to them exactly
        assert line.split(" samples/s")[0].rsplit("  ", 1)[0] == expected.split(" samples/s")[0].rsplit("  ", 1)[0]
        assert line.startswith(f"epoch {epoch + 1}/2  loss {history['loss'][epoch]:.4f}  train acc ")
        assert line.endswith(f"  {model.device}")


def test_verbose_auto_prints_epoch_lines_without_a_terminal(dev, capsys):
    """Like Keras: a log file, a notebook or a CI job gets one line per epoch; only verbose=0 is silent."""
    _fit_small(dev)  # verbose="auto", stdout captured (not a terminal)
    out = capsys.readouterr().out
    assert re.findall(r"^epoch (\d)/2  loss ", out, re.M) == ["1", "2"]
    _fit_small(dev, verbose=0)
    assert capsys.readouterr() == ("", "")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch):
    """A function that makes sys.stderr a terminal (call it in the test: pytest resets sys.stderr between
    setup and call); tqdm gets a plain thread lock and no monitor thread, so that nothing outlives the
    test (its default lock is a multiprocessing semaphore, shared with forked processes)."""
    from tqdm.auto import tqdm

    monkeypatch.setattr(tqdm, "_lock", threading.RLock(), raising=False)
    monkeypatch.setattr(tqdm, "monitor_interval", 0)

    def use():
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        return term

    return use


def test_progress_bar_on_a_terminal(dev, terminal, capsys):
    term = terminal()
    _, history = _fit_small(dev, verbose=1)
    bars = term.getvalue()
    for epoch in (1, 2):
        assert f"epoch {epoch}/2: " in bars
        assert re.search(rf"epoch {epoch}/2: 100%.*\| 22/22 \[.*sample/s, loss={history['loss'][epoch - 1]:.4f}\]",
                         bars), bars
    assert "\n" not in bars  # leave=False: each bar is cleared when its epoch ends
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_no_progress_bar_when_silent_even_on_a_terminal(dev, terminal, monkeypatch, capsys):
    term = terminal()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _fit_small(dev, verbose=0)
    assert term.getvalue() == "" and capsys.readouterr().out == ""


def test_seconds_and_throughput(dev):
    before = time.perf_counter()
    _, history = _fit_small(dev, verbose=0)
    elapsed = time.perf_counter() - before
    for seconds, rate in zip(history["seconds"], history["samples_per_s"]):
        assert 0 < seconds <= elapsed
        assert rate == pytest.approx(N / seconds, rel=1e-9)


def test_throughput_of_an_epoch_too_fast_to_time(dev, monkeypatch):
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=lambda: 100.0))
    _, history = _fit_small(dev, verbose=0)
    assert history["seconds"] == [0.0, 0.0] and history["samples_per_s"] == [float("inf")] * 2


def test_history():
    h = History()
    h.append({"loss": 1.0, "accuracy": 0.5})
    h.append({"loss": 0.5})
    assert "loss" in h and "val_loss" not in h
    assert h["loss"] == [1.0, 0.5] and h["accuracy"] == [0.5]
    assert repr(h) == "History({'loss': [1.0, 0.5], 'accuracy': [0.5]})"


# -- training.fit's defaults and errors ----------------------------------------------------------------
def test_training_fit_shuffles_and_prints_epoch_lines_by_default(dev, capsys):
    X, y = _data()
    kwargs = {"loss": SoftmaxCrossEntropy(), "optimizer": SGD(0.5), "epochs": 1, "batch_size": 4}
    models = [Sequential([Dense(FEATURES, CLASSES)], device=dev, seed=3) for _ in range(3)]
    training.fit(models[0], X, y, **kwargs)
    assert re.fullmatch(r"epoch 1/1  loss [^\n]*\n", capsys.readouterr().out)
    training.fit(models[1], X, y, shuffle=True, verbose=0, **kwargs)
    training.fit(models[2], X, y, shuffle=False, verbose=0, **kwargs)
    assert capsys.readouterr().out == ""
    W = [m.state_dict()["0.W"] for m in models]
    np.testing.assert_array_equal(W[0], W[1])  # same seed, same permutation
    assert np.abs(W[0] - W[2]).max() > 1e-4


def test_fit_errors_say_where():
    model = Sequential([Dense(FEATURES, CLASSES)], device="cpu", seed=0)
    X, y = _data()
    with pytest.raises(ValueError, match=r"^fit: X has shape \(22, 5\) but the first layer Dense"):
        model.fit(np.zeros((N, 5), np.float32), y, loss="softmax_cross_entropy", verbose=0)
    with pytest.raises(ValueError, match=r"^check_every must be an int >= 1, got 0$"):
        training.fit(model, X, y, loss="mse", optimizer="sgd", epochs=1, batch_size=4, check_every=0)
    for bad in ((X, y, X), [X], X):
        with pytest.raises(TypeError, match=r"^fit: validation_data must be a pair \(X_val, y_val\), or a "
                                            r"TextWindows source$"):
            model.fit(X, y, loss="softmax_cross_entropy", validation_data=bad, verbose=0)


# -- callbacks and accuracy at the edges ------------------------------------------------------------
def test_callbacks_see_every_epoch_and_only_true_stops(dev):
    seen = []

    def record(epoch, logs):
        seen.append((epoch, dict(logs)))
        return [False, 1, "yes", None][epoch]  # falsy or truthy, but never True: training goes on

    model, history = _fit_small(dev, verbose=0, epochs=4, callbacks=[record])
    assert [e for e, _ in seen] == [0, 1, 2, 3] and len(history["loss"]) == 4
    for epoch, logs in seen:
        assert logs == {k: v[epoch] for k, v in history.history.items()}
    stops = []
    model, history = _fit_small(dev, verbose=0, epochs=5,
                                callbacks=[lambda e, logs: stops.append(e), lambda e, logs: e == 1])
    assert isinstance(history, History) and len(history["loss"]) == 2 and stops == [0, 1]


def _fixed(dev, n_out, last=()):
    """Dense(n_out, n_out) with W = I, b = 0: the outputs are the inputs."""
    model = Sequential([Dense(n_out, n_out), *last], device=dev, seed=0)
    model.load_state_dict({"0.W": np.eye(n_out), "0.b": np.zeros(n_out)})
    return model


def test_two_output_accuracy_is_argmax_against_labels_or_rows(dev):
    X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [-1.0, -2.0], [0.5, 0.6]], np.float32)
    labels = np.array([0, 1, 1, 0, 0])  # argmax of X is 0, 1, 0, 0, 1: 3 of 5 right
    for y in (labels, np.eye(2, dtype=np.float32)[labels]):
        model = _fixed(dev, 2)
        assert model.evaluate(X, y, loss=SoftmaxCrossEntropy(), batch_size=2)["accuracy"] == pytest.approx(0.6)
        history = model.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(1e-9), epochs=1, batch_size=5,
                            shuffle=False, verbose=0)
        assert history["accuracy"] == [pytest.approx(0.6)]


@pytest.mark.parametrize("loss, last", [("binary_cross_entropy", ()), ("mse", (xpnet.Sigmoid(),))],
                         ids=["logit-0", "probability-0.5"])
def test_an_output_exactly_at_the_threshold_is_class_zero(dev, loss, last):
    """The decision is ``output > threshold`` (like scikit-learn's ``decision_function > 0``)."""
    X = np.array([[0.0], [0.0], [2.0], [-2.0]], np.float32)
    model = _fixed(dev, 1, last)
    assert model.evaluate(X, np.array([0, 0, 1, 0]), loss=loss)["accuracy"] == 1.0
    assert model.evaluate(X, np.array([1, 1, 1, 0]), loss=loss)["accuracy"] == 0.5


def test_progress_bar_counts_each_window_once(terminal):
    """One update per read-back window, by the samples that window added: 8, 16, 22 of 22, never more."""
    term = terminal()
    X, y = _data()
    model = Sequential([Dense(FEATURES, CLASSES)], device="cpu", seed=0)
    training.fit(model, X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), epochs=1, batch_size=8,
                 check_every=1, verbose=1)
    counts = [int(n) for n in re.findall(r"\| (\d+)/22 \[", term.getvalue())]
    assert counts and set(counts) <= {0, 8, 16, 22} and counts[-1] == 22, term.getvalue()
