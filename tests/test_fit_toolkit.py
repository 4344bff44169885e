"""fit's toolkit: validation_split, metrics (top-k), Keras' callbacks (EarlyStopping, ModelCheckpoint,
LearningRateScheduler, CSVLogger) and History.plot."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

import xpnet
from xpnet import BatchNorm1d, training
from xpnet import (SGD, CSVLogger, Dense, EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                   ReLU, Sequential, TopKAccuracy, to_numpy)
from xpnet.callbacks import Callback, History


def _data(n=60, features=5, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), rng.integers(0, classes, n)


def _mlp(dev, features=5, classes=6):
    return Sequential([Dense(features, 8), ReLU(), Dense(8, classes)], device=dev, seed=3)


def _weights(model):
    return {k: to_numpy(v).copy() for k, v in model.parameters().items()}


# -- validation_split ----------------------------------------------------------------------------
def test_validation_split_holds_out_the_last_rows_like_validation_data(dev):
    X, y = _data(50)
    kwargs = dict(loss="softmax_cross_entropy", optimizer=SGD(0.5), epochs=3, batch_size=8, verbose=0)
    a, b = _mlp(dev), _mlp(dev)
    split = a.fit(X, y, validation_split=0.3, **kwargs)  # ceil(50 * 0.7) = 35 training rows, as Keras
    given = b.fit(X[:35], y[:35], validation_data=(X[35:], y[35:]), **kwargs)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert split[key] == given[key], key
    wa, wb = _weights(a), _weights(b)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_validation_split_rounds_the_training_part_up_as_keras():
    X, y = _data(10)
    model = _mlp("cpu")
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=1, batch_size=10, verbose=0,
                        validation_split=0.25)  # ceil(7.5) = 8 training rows, 2 held out
    assert history["val_loss"][0] == model.evaluate(X[8:], y[8:])["loss"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(validation_split=0.2, validation_data=(np.zeros((2, 5), np.float32), np.zeros(2, np.int64))),
     "validation_data and validation_split were both given"),
    (dict(validation_split=0.01), "leaves no validation rows"),
    (dict(validation_split=1.0), "must be a number in \\(0, 1\\)"),
    (dict(validation_split=-0.1), "must be a number in \\(0, 1\\)"),
])
def test_validation_split_errors(kwargs, match):
    X, y = _data(10)
    with pytest.raises(ValueError, match=match):
        _mlp("cpu").fit(X, y, loss="softmax_cross_entropy", epochs=1, verbose=0, **kwargs)


# -- metrics: top-k -------------------------------------------------------------------------------
def _top_k_reference(scores, labels, k):
    """A row is a hit when its label scores at least the k-th largest score: ties at the boundary count
    for the label (tf.math.in_top_k's rule). By sorting, not by counting."""
    kth = np.sort(scores, axis=1)[:, -k]
    return float(np.mean(scores[np.arange(len(labels)), labels] >= kth))


def test_top_k_on_hand_made_scores_with_ties():
    scores = np.array([[0.1, 0.5, 0.5, 0.2],    # label 2 ties with 1 for the top: in the top 1
                       [0.4, 0.3, 0.3, 0.3],    # label 3 ties for second with 1 and 2: in the top 2
                       [0.9, 0.8, 0.7, 0.1]],   # label 3 is last: only in the top 4
                      dtype=np.float32)
    labels = np.array([2, 3, 3])
    for k, expected in [(1, 1 / 3), (2, 2 / 3), (3, 2 / 3), (4, 1.0)]:
        hits = TopKAccuracy(k).hits(scores, labels, 0.5)
        assert float(np.mean(hits)) == expected == _top_k_reference(scores, labels, k), k
    onehot = np.eye(4, dtype=np.float32)[labels]
    assert list(TopKAccuracy(2).hits(scores, onehot, 0.5)) == [True, True, False]


def test_evaluate_top_k_matches_numpy_on_every_backend(dev):
    X, y = _data(97)
    model = _mlp(dev)
    scores = to_numpy(model.predict(X)).astype(np.float64)
    result = model.evaluate(X, y, loss="softmax_cross_entropy", batch_size=16,
                            metrics=["accuracy", "top_2_accuracy", TopKAccuracy(4)])
    assert set(result) == {"loss", "accuracy", "top_2_accuracy", "top_4_accuracy"}
    assert result["accuracy"] == float(np.mean(scores.argmax(1) == y))
    assert result["top_2_accuracy"] == _top_k_reference(scores, y, 2)
    assert result["top_4_accuracy"] == _top_k_reference(scores, y, 4)
    assert _top_k_reference(scores, y, 2) < _top_k_reference(scores, y, 4)  # the check can tell k apart


def test_fit_reports_top_k_on_training_and_validation_rows(dev):
    X, y = _data(40)
    model = _mlp(dev)
    before = to_numpy(model.predict(X)).astype(np.float64)
    # a rate too small to move float32 weights: every batch is scored with the starting weights, and the
    # epoch's count adds up 3 read-back windows (6 batches, check_every=2)
    history = training.fit(model, X, y, loss="softmax_cross_entropy", optimizer=SGD(1e-12), epochs=1,
                           batch_size=7, verbose=0, metrics=["top_3_accuracy", "accuracy"],
                           validation_data=(X[:20], y[:20]), check_every=2)
    assert history["top_3_accuracy"] == [pytest.approx(_top_k_reference(before, y, 3), abs=1e-12)]
    assert history["accuracy"] == [pytest.approx(float(np.mean(before.argmax(1) == y)), abs=1e-12)]
    assert history["val_top_3_accuracy"] == [_top_k_reference(before[:20], y[:20], 3)]


def test_metrics_errors():
    X, y = _data(10)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        _mlp("cpu").fit(X, y, loss="softmax_cross_entropy", verbose=0, metrics=["f1"])
    with pytest.raises(TypeError, match="metrics must be a list"):
        _mlp("cpu").fit(X, y, loss="softmax_cross_entropy", verbose=0, metrics="accuracy")
    with pytest.raises(ValueError, match="need class targets"):
        _mlp("cpu", classes=1).fit(X, X[:, :1], loss="mse", verbose=0, metrics=["accuracy"])
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        TopKAccuracy(0)


def test_top_k_on_two_classes_with_labels_of_any_dtype_and_not_on_one_output():
    scores = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]], dtype=np.float32)
    labels = np.array([1, 1, 0])
    for given in (labels, labels.astype(np.int32), labels.astype(np.float64)):  # labels as a file gives them
        assert list(TopKAccuracy(1).hits(scores, given, 0.5)) == [True, False, True], given.dtype
    assert list(TopKAccuracy(2).hits(scores, labels, 0.5)) == [True, True, True]
    assert (TopKAccuracy().k, TopKAccuracy().name, repr(TopKAccuracy(3))) == (5, "top_5_accuracy", "TopKAccuracy(3)")
    with pytest.raises(ValueError) as info:
        TopKAccuracy(2).hits(scores[:, :1], labels, 0.5)
    assert str(info.value) == ("top_2_accuracy: the model has one output unit, so there is no ranking of classes; "
                               "use 'accuracy' for a binary classifier")
    with pytest.raises(ValueError) as info:
        TopKAccuracy(True)
    assert str(info.value) == "TopKAccuracy: k must be an int >= 1, got True"


def test_metric_names_resolve_and_unknown_ones_are_refused():
    from xpnet import metrics

    assert [type(metrics.get(s)).__name__ for s in ("accuracy", "acc")] == ["Accuracy", "Accuracy"]
    assert metrics.get("top_12_accuracy").k == 12 and repr(metrics.get("acc")) == "Accuracy()"
    for spec in (5, None, "ACC", "top_k_accuracy"):
        with pytest.raises(ValueError) as info:
            metrics.get(spec)
        assert str(info.value) == (f"unknown metric {spec!r}: use 'accuracy', 'top_5_accuracy' (any k), or "
                                   f"xpnet.metrics.TopKAccuracy(k)")


# -- EarlyStopping --------------------------------------------------------------------------------
class Scripted(Callback):
    """Writes a scripted value into each epoch's logs (and notes the weights then), for the callbacks after it."""

    def __init__(self, values, key="val_loss", snapshots=None):
        self.values, self.key, self.snapshots = values, key, snapshots

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        if self.snapshots is not None:
            self.snapshots.append(_weights(self.model))


def _train(dev, callbacks, epochs=10):
    X, y = _data(30)
    model = _mlp(dev)
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=SGD(0.3), epochs=epochs, batch_size=10,
                        verbose=0, callbacks=callbacks)
    return model, history


@pytest.mark.parametrize("patience, stops_after", [(0, 2), (1, 2), (2, 3), (3, 4), (4, 9)])
def test_early_stopping_stops_after_patience_epochs_without_improvement(patience, stops_after):
    """Keras' rule: stop at the ``patience``-th epoch in a row that does not beat the best (0 and 1 alike)."""
    losses = [1.0, 0.8, 0.9, 0.85, 0.8, 0.7, 0.75, 0.76, 0.77, 0.78]
    # improves at 0, 1, 5; epochs 2-4 (0.8 ties the best: no improvement) and 6-9 do not
    stop = EarlyStopping(patience=patience)
    _, history = _train("cpu", [Scripted(losses), stop])
    assert len(history["loss"]) == stops_after + 1 and stop.stopped_epoch == stops_after
    assert stop.best == min(losses[:stops_after + 1])


def test_early_stopping_min_delta_mode_and_baseline():
    stop = EarlyStopping(monitor="val_loss", min_delta=0.15, patience=2)
    _train("cpu", [Scripted([1.0, 0.9, 0.88, 0.5, 0.45, 0.4]), stop])
    assert stop.stopped_epoch == 2 and stop.best == 1.0  # 0.9 and 0.88 beat 1.0 by less than 0.15
    acc = EarlyStopping(monitor="val_accuracy", patience=0)  # auto: an accuracy must go up
    _train("cpu", [Scripted([0.5, 0.6, 0.7, 0.65, 0.9], "val_accuracy"), acc])
    assert acc.stopped_epoch == 3 and acc.best == 0.7
    # the first epoch improves on nothing-yet but not on the baseline, so its wait is not reset
    base, plain = EarlyStopping(patience=2, baseline=0.5), EarlyStopping(patience=2)
    _train("cpu", [Scripted([0.9, 0.95, 0.97, 0.99]), base], epochs=4)
    _train("cpu", [Scripted([0.9, 0.95, 0.97, 0.99]), plain], epochs=4)
    assert (base.stopped_epoch, plain.stopped_epoch) == (1, 2)


def test_early_stopping_restores_the_best_weights_exactly(dev):
    snapshots = []
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    model, history = _train(dev, [Scripted([1.0, 0.9, 0.5, 0.7, 0.6, 0.8], snapshots=snapshots), stop])
    assert len(history["loss"]) == 5 and stop.best_epoch == 2
    restored = _weights(model)
    for k in restored:
        np.testing.assert_array_equal(restored[k], snapshots[2][k])
    assert any(not np.array_equal(restored[k], snapshots[-1][k]) for k in restored)  # they did move on
    assert xpnet.device_of(next(iter(model.parameters().values()))) == model.device


def test_early_stopping_restores_the_best_weights_also_when_it_never_stopped(dev):
    """Keras 3's rule (keras/src/callbacks/early_stopping.py, on_train_end): the best epoch's weights come
    back whenever training ends, not only after an early stop (tf.keras 2 restored them only then)."""
    snapshots = []
    stop = EarlyStopping(patience=5, restore_best_weights=True)
    model, history = _train(dev, [Scripted([1.0, 0.5, 0.7, 0.6], snapshots=snapshots), stop], epochs=4)
    assert len(history["loss"]) == 4 and stop.stopped_epoch == 0 and stop.best_epoch == 1
    restored = _weights(model)
    for k in restored:
        np.testing.assert_array_equal(restored[k], snapshots[1][k])
    assert any(not np.array_equal(restored[k], snapshots[-1][k]) for k in restored)  # the last epoch's differ


def test_early_stopping_restores_batchnorm_running_statistics_too(dev):
    X, y = _data(30)
    model = Sequential([Dense(5, 8), BatchNorm1d(8), ReLU(), Dense(8, 6)], device=dev, seed=3)
    states = []
    record = xpnet.LambdaCallback(lambda epoch, logs: states.append(model.state_dict()))
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=SGD(0.3), epochs=10, batch_size=10, verbose=0,
              callbacks=[Scripted([1.0, 0.9, 0.5, 0.7, 0.6, 0.8]), record, stop])
    assert stop.best_epoch == 2
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, states[2][k], err_msg=k)
    assert not np.array_equal(states[2]["1.running_mean"], states[-1]["1.running_mean"])


def test_divergence_rollback_puts_back_batchnorm_running_statistics(dev):
    X, y = _data(40)
    model = Sequential([Dense(5, 8), BatchNorm1d(8), ReLU(), Dense(8, 6)], device=dev, seed=3)
    with pytest.raises(xpnet.TrainingDiverged):
        # a rate that overflows float32 within a few steps: the batch statistics go infinite with the weights
        training.fit(model, X, y, loss="softmax_cross_entropy", optimizer=SGD(1e30), epochs=1, batch_size=10,
                     verbose=0, shuffle=False, check_every=1)
    for k, v in model.state_dict().items():
        assert np.all(np.isfinite(v)), k


def test_early_stopping_without_restore_keeps_the_last_weights():
    snapshots = []
    model, _ = _train("cpu", [Scripted([1.0, 0.9, 0.5, 0.7, 0.6, 0.8], snapshots=snapshots),
                              EarlyStopping(patience=2)])
    assert all(np.array_equal(v, snapshots[-1][k]) for k, v in _weights(model).items())


def test_early_stopping_says_when_the_monitored_key_is_missing():
    """A user's callback before it might have put val_loss in the logs, so fit cannot refuse at the start
    (tests/test_second_hour_fit.py has that case): the epoch's end says it."""
    with pytest.raises(ValueError, match="monitor='val_loss' is not in the epoch's logs .val_ keys need"):
        _train("cpu", [lambda epoch, logs: None, EarlyStopping()])


# -- ModelCheckpoint ------------------------------------------------------------------------------
def test_model_checkpoint_save_best_only_writes_only_on_improvement(tmp_path, dev):
    snapshots = []
    path = str(tmp_path / "ckpt" / "m-{epoch:02d}-{val_loss:.2f}.npz")
    ckpt = ModelCheckpoint(path, save_best_only=True)
    _train(dev, [Scripted([1.0, 0.9, 0.95, 0.5, 0.7], snapshots=snapshots), ckpt], epochs=5)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["m-01-1.00.npz", "m-02-0.90.npz", "m-04-0.50.npz"]
    loaded = xpnet.load(tmp_path / "ckpt" / "m-04-0.50.npz")
    for k, v in _weights(loaded).items():
        np.testing.assert_array_equal(v, snapshots[3][k])
    assert ckpt.best == 0.5


def test_model_checkpoint_every_epoch_overwrites_one_name(tmp_path):
    path = tmp_path / "last.npz"
    model, _ = _train("cpu", [ModelCheckpoint(path, monitor="loss")], epochs=3)
    assert os.listdir(tmp_path) == ["last.npz"]  # atomic writes leave no temporary file behind
    assert all(np.array_equal(v, _weights(model)[k]) for k, v in _weights(xpnet.load(path)).items())


def test_model_checkpoint_max_mode_and_bad_filepath(tmp_path):
    ckpt = ModelCheckpoint(str(tmp_path / "{epoch}.npz"), monitor="val_accuracy", save_best_only=True)
    _train("cpu", [Scripted([0.2, 0.1, 0.3], "val_accuracy"), ckpt], epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["1.npz", "3.npz"]
    with pytest.raises(ValueError, match="cannot format filepath"):
        _train("cpu", [ModelCheckpoint(str(tmp_path / "{nope}.npz"))], epochs=1)


# -- LearningRateScheduler ------------------------------------------------------------------------
def test_learning_rate_scheduler_sets_the_rate_at_each_epoch_start():
    _, history = _train("cpu", [LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)], epochs=4)
    assert history["lr"] == [0.3, 0.15, 0.075, 0.0375]
    _, history = _train("cpu", [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], epochs=3)
    assert history["lr"] == [0.1, 0.05, 0.1 / 3]
    with pytest.raises(ValueError, match="returned nan for epoch 0"):
        _train("cpu", [LearningRateScheduler(lambda epoch, lr: float("nan"))], epochs=1)


# -- CSVLogger ------------------------------------------------------------------------------------
def test_csv_logger_writes_one_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    _, history = _train("cpu", [CSVLogger(path)], epochs=3)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "lr", "samples_per_s", "seconds"]
    assert [float(r["loss"]) for r in rows] == history["loss"]  # full precision
    _train("cpu", [CSVLogger(path, separator=";", append=True)], epochs=2)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3 + 2 and lines[4].startswith("0;") and lines[5].startswith("1;")


# -- History.plot ---------------------------------------------------------------------------------
def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="History.plot needs the plot extra (matplotlib)")
    history = History()
    for e in range(4):
        history.append({"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "accuracy": 0.5 + 0.1 * e,
                        "val_accuracy": 0.45 + 0.1 * e})
    fig = history.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in axes[0].get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(axes[1].get_lines()[1].get_ydata(), history["val_accuracy"])
    regression = History()
    regression.append({"loss": 1.0})
    assert [ax.get_title() for ax in regression.plot().get_axes()] == ["loss"]  # no accuracy: one panel
    with pytest.raises(ValueError, match="none of \\['accuracy'\\] is in this history"):
        regression.plot(metrics=("accuracy",))


def test_history_plot_names_the_extra_without_matplotlib(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install 'xpnet\\[plot\\]'"):
        History().plot()


def test_accuracy_takes_labels_of_another_dtype_than_argmaxs_on_a_strict_backend():
    """array-api-strict compares no integer with a float: the labels are cast to the predictions' dtype."""
    import array_api_strict as xps

    scores = xps.asarray([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
    for labels in (xps.asarray([1, 1, 0], dtype=xps.int32), xps.asarray([1.0, 1.0, 0.0])):
        hits = xpnet.metrics.Accuracy().hits(scores, labels, 0.5)
        assert [bool(h) for h in hits] == [True, False, False], labels.dtype


def test_a_metric_named_twice_is_refused():
    with pytest.raises(ValueError) as info:
        xpnet.metrics.get_all(["accuracy", "acc"], classify=True, where="fit")
    assert str(info.value) == "fit: metrics ['accuracy', 'accuracy'] name one metric twice"
