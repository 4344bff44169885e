"""What training and the command line say: the progress line off a terminal, early stopping's line, the
``val`` label of held-out figures, where the device line appears, ``summary()`` and ``named_parameters()``."""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

import xpnet
from xpnet import (AvgPool2D, BatchNorm1d, BatchNorm2d, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, MaxPool2D,
                   ReLU, Reshape, Sequential, SGD, SoftmaxCrossEntropy)
from xpnet.callbacks import Callback, EarlyStopping, EpochLine, progress
from conftest import run_main


# -- the progress line off a terminal ---------------------------------------------------------------
class _Clock(Callback):
    """A fake wall clock that moves ``tick`` seconds at each read-back window, after the progress bar has
    looked at it; it keeps each window's running loss."""

    def __init__(self, monkeypatch, tick):
        self.now, self.tick, self.losses = 1000.0, tick, []
        monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: self.now))

    def on_batch_end(self, step, logs=None):
        self.losses.append(logs["loss"])
        self.now += self.tick


def _slow_fit(monkeypatch, tick, verbose=1, epochs=2):
    """2200 rows in batches of 200: 11 steps an epoch, each a read-back window that takes ``tick`` s."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2200, 4)).astype(np.float32), rng.integers(0, 3, size=2200)
    clock = _Clock(monkeypatch, tick)
    Sequential([Dense(4, 3)], device="cpu", seed=0).fit(
        X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), epochs=epochs, batch_size=200, check_every=1,
        verbose=verbose, callbacks=[clock])
    return clock


def test_off_a_terminal_a_slow_epoch_prints_a_progress_line_every_30_seconds(monkeypatch, capsys):
    clock = _slow_fit(monkeypatch, tick=15.0)
    out, err = capsys.readouterr()
    # windows end at 15 s, 30 s, ... into the epoch: a line at 30, 60, 90 and 120 s, none at the last
    # window (150 s: the epoch line follows at once); 600 samples in 30 s is 20 samples/s, 1600 to go
    expected = []
    for epoch in (1, 2):
        for step, rate, left in ((3, "20", "1:20"), (5, "17", "1:12"), (7, "16", "0:51"), (9, "15", "0:27")):
            loss = clock.losses[(epoch - 1) * 11 + step - 1]
            expected.append(f"epoch {epoch}/2  step {step}/11  loss {loss:.4f}  {rate} samples/s  ~{left} left in "
                            f"the epoch")
    assert err.splitlines() == expected
    assert [line[:10] for line in out.splitlines()] == ["epoch 1/2 ", "epoch 2/2 "]  # the epoch lines, on stdout


def test_no_progress_line_before_30_seconds_nor_when_silent(monkeypatch, capsys):
    _slow_fit(monkeypatch, tick=2.9)  # 29 s an epoch: its epoch line is news enough
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 2
    _slow_fit(monkeypatch, tick=100.0, verbose=0)
    assert capsys.readouterr() == ("", "")


def test_verbose_2_is_the_epoch_lines_alone_as_in_keras(monkeypatch, capsys):
    _slow_fit(monkeypatch, tick=100.0, verbose=2)
    out, err = capsys.readouterr()
    assert err == "" and [line[:10] for line in out.splitlines()] == ["epoch 1/2 ", "epoch 2/2 "]


def test_an_epoch_line_starts_the_30_seconds_afresh(monkeypatch, capsys):
    _slow_fit(monkeypatch, tick=2.9, epochs=3)  # 3 x 29 s: never 30 s without a line of some kind
    assert capsys.readouterr().err == ""


def test_hours_left_are_written_as_h_mm_ss():
    fmt = progress.format_seconds
    assert (fmt(0), fmt(59), fmt(61), fmt(3600), fmt(3725)) == (
        "0:00", "0:59", "1:01", "1:00:00", "1:02:05")


# -- early stopping's line --------------------------------------------------------------------------
class _Scores(Callback):
    """Puts a scripted ``score`` into each epoch's logs, for the EarlyStopping after it to watch."""

    def __init__(self, scores):
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]


def _stopping(capsys, scores, epochs, **kwargs):
    X = np.linspace(0, 1, 8, dtype=np.float32).reshape(8, 1)
    model = Sequential([Dense(1, 1)], device="cpu", seed=0)
    stop = EarlyStopping(monitor="score", **{"patience": 2, "verbose": 1, **kwargs})
    history = model.fit(X, 2 * X, loss="mse", optimizer=SGD(0.1), epochs=epochs, batch_size=4, verbose=0,
                        callbacks=[_Scores(scores), stop])
    return len(history["loss"]), capsys.readouterr().out.splitlines()


def test_early_stopping_says_where_it_stopped_and_which_epoch_it_restored(capsys):
    ran, lines = _stopping(capsys, [3.0, 1.0, 2.0, 2.0, 0.5, 0.5], 6, restore_best_weights=True)
    assert ran == 4 and lines == ["EarlyStopping: stopped at epoch 4 of 6 (score: 2 epochs without improvement); "
                                  "best epoch 2 (score 1.0000) restored"]


def test_early_stopping_without_restoring_says_whose_weights_the_model_has(capsys):
    _, lines = _stopping(capsys, [3.0, 1.0, 2.0], 5, patience=1)
    assert lines == ["EarlyStopping: stopped at epoch 3 of 5 (score: 1 epoch without improvement); best epoch 2 "
                     "(score 1.0000), not restored (restore_best_weights=False): the model has epoch 3's weights"]


def test_early_stopping_that_never_stopped_says_so_only_when_it_put_back_an_earlier_epoch(capsys):
    _, lines = _stopping(capsys, [1.0, 2.0, 2.0], 3, patience=5, restore_best_weights=True)
    assert lines == ["EarlyStopping: did not stop; best epoch 1 (score 1.0000) restored"]
    assert _stopping(capsys, [3.0, 2.0, 1.0], 3, patience=5, restore_best_weights=True)[1] == []
    assert _stopping(capsys, [1.0, 2.0, 2.0], 3, patience=5)[1] == []


def test_early_stopping_is_silent_with_verbose_0(capsys):
    ran, lines = _stopping(capsys, [3.0, 1.0, 2.0, 2.0], 4, verbose=0, restore_best_weights=True)
    assert ran == 4 and lines == []


def test_the_command_says_where_early_stopping_stopped(capsys):
    spirals = ("train", "--dataset", "spirals", "--device", "cpu", "--val-split", "0.25", "--early-stopping", "1",
               "--lr", "3", "--schedule", "constant", "--epochs", "30")
    code, out, err = run_main(capsys, *spirals)
    assert code == 0, err
    said = re.findall(r"^EarlyStopping: stopped at epoch (\d+) of 30 \(val_loss: 1 epoch without improvement\); "
                      r"best epoch (\d+) \(val_loss [\d.]+\) restored$", out, re.M)
    epochs = re.findall(r"^epoch (\d+)/30  ", out, re.M)
    assert len(said) == 1 and said[0][0] == epochs[-1] and int(said[0][1]) < int(said[0][0])
    code, out, err = run_main(capsys, *spirals, "--quiet")
    assert code == 0 and "EarlyStopping" not in out + err


# -- held-out figures are "val", as the history's keys ------------------------------------------------
def _small(**kwargs):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 4)).astype(np.float32), rng.integers(0, 3, size=20)
    model = Sequential([Dense(4, 3)], device="cpu", seed=0)
    return model.fit(X, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), epochs=1, batch_size=5, verbose=1,
                     **kwargs)


@pytest.mark.parametrize("held_out", [{"validation_data": "given"}, {"validation_split": 0.25}])
def test_the_epoch_line_labels_held_out_figures_val_like_the_history(capsys, held_out):
    rng = np.random.default_rng(1)
    if "validation_data" in held_out:
        held_out = {"validation_data": (rng.normal(size=(6, 4)).astype(np.float32), rng.integers(0, 3, size=6))}
    history = _small(**held_out)
    out = capsys.readouterr().out
    assert "val_loss" in history and "val_accuracy" in history
    assert re.fullmatch(r"epoch 1/1  loss [\d.]+  train acc [\d.]+  val loss [\d.]+  val acc [\d.]+  .*\n", out)


def test_an_epoch_line_among_the_callbacks_replaces_fits_own(capsys):
    rng = np.random.default_rng(1)
    val = (rng.normal(size=(6, 4)).astype(np.float32), rng.integers(0, 3, size=6))
    _small(validation_data=val, callbacks=[EpochLine(held_out="test")])
    out = capsys.readouterr().out
    assert re.fullmatch(r"epoch 1/1  loss [\d.]+  train acc [\d.]+  test loss [\d.]+  test acc [\d.]+  .*\n", out)


# -- the device line: where something trains, or where the user asked -----------------------------------
@pytest.fixture
def saved_model(capsys, tmp_path):
    path = tmp_path / "m.npz"
    code, _, err = run_main(capsys, "train", "--dataset", "spirals", "--epochs", "1", "--device", "cpu", "--save",
                            str(path), "--quiet")
    assert code == 0, err
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    return path


@pytest.mark.usefixtures("cli_environment")
def test_the_device_line_only_where_something_trains_or_info_was_asked(capsys, saved_model, tmp_path):
    said = {}
    for name, args in {"train": ["train", "--dataset", "spirals", "--epochs", "1"],
                       "info": ["info"],
                       "train --quiet": ["train", "--dataset", "spirals", "--epochs", "1", "--quiet"],
                       "evaluate": ["evaluate", str(saved_model)],
                       "predict": ["predict", str(saved_model), "--input", str(tmp_path / "x.npy")]}.items():
        code, _, err = run_main(capsys, *args)  # no --device: "auto", which says what it picked, and why
        assert code == 0, (name, err)
        said[name] = "xpnet: device auto -> " in err
    assert said == {"train": True, "info": True, "train --quiet": False, "evaluate": False, "predict": False}


@pytest.mark.usefixtures("cli_environment")
def test_export_prints_no_device_line(capsys, saved_model, tmp_path):
    pytest.importorskip("onnx", reason="export needs onnx (pip install 'xpnet[onnx]')")
    code, out, err = run_main(capsys, "export", str(saved_model), "--onnx", str(tmp_path / "m.onnx"))
    assert code == 0 and "device" not in err and out.startswith("wrote ")


# -- summary() ----------------------------------------------------------------------------------------
def _cnn(dev=None):
    return Sequential([Reshape((1, 6, 6)), Conv2D(1, 4, 3), BatchNorm2d(4), ReLU(), MaxPool2D(2), Dropout(0.25),
                       Flatten(), Dense(16, 8), BatchNorm1d(8), ReLU(), Dense(8, 3)], device=dev, seed=0)


def _summary(model, **kwargs) -> list[str]:
    lines = []
    assert model.summary(print_fn=lines.append, **kwargs) is None
    return lines


def test_summary_is_the_table_a_keras_user_knows(dev):
    assert _summary(_cnn(dev)) == [
        f"Sequential on {dev}, float32",
        "Input shape: (None, 36) (from Reshape)",
        "=" * 53,
        " #  Layer (type)  Output shape     Param #  Arguments",
        "=" * 53,
        " 0  Reshape       (None, 1, 6, 6)        0  shape=[1, 6, 6]",
        " 1  Conv2D        (None, 4, 4, 4)       40  in_channels=1, out_channels=4, kernel_size=[3, 3], stride=[1, 1], "
        "padding=[0, 0], bias=True, init='he_normal'",
        " 2  BatchNorm2d   (None, 4, 4, 4)       16  num_features=4, momentum=0.1, eps=1e-05",
        " 3  ReLU          (None, 4, 4, 4)        0",
        " 4  MaxPool2D     (None, 4, 2, 2)        0  kernel_size=[2, 2], stride=[2, 2]",
        " 5  Dropout       (None, 4, 2, 2)        0  p=0.25",
        " 6  Flatten       (None, 16)             0",
        " 7  Dense         (None, 8)            136  in_features=16, out_features=8, init='lecun_normal', bias=True",
        " 8  BatchNorm1d   (None, 8)             32  num_features=8, momentum=0.1, eps=1e-05",
        " 9  ReLU          (None, 8)              0",
        "10  Dense         (None, 3)             27  in_features=8, out_features=3, init='lecun_normal', bias=True",
        "=" * 53,
        "Total params: 251 (1004 B)",
        "Trainable params: 227 (908 B)",
        "Non-trainable params: 24 (96 B)  (buffers: BatchNorm's running statistics)"]


def test_summary_counts_what_parameters_and_buffers_hold():
    model = _cnn()
    lines = _summary(model)
    trained = sum(int(np.prod(v.shape)) for v in model.parameters().values())
    kept = sum(int(np.prod(v.shape)) for v in model.buffers().values())
    assert lines[-2].startswith(f"Trainable params: {trained} ") and lines[-1].startswith(f"Non-trainable params: {kept} ")


def test_summary_prints_by_default(capsys):
    Sequential([Dense(784, 200), ReLU(), Dense(200, 10)], device="cpu", dtype="float64").summary()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Sequential on cpu (numpy), float64" and out[1] == "Input shape: (None, 784) (from Dense)"
    assert out[-3:] == ["Total params: 159,010 (1.21 MiB)", "Trainable params: 159,010 (1.21 MiB)",
                        "Non-trainable params: 0 (0 B)"]


def test_summary_without_a_known_input_shape_says_so_and_takes_one():
    model = Sequential([Flatten(), Dense(12, 2)], device="cpu")
    lines = _summary(model)
    assert lines[1] == "Input shape: ? (not known from the first layers: pass summary(input_shape=...), one sample's shape)"
    assert [re.split(r"  +", line.strip())[2] for line in lines[5:7]] == ["?", "?"]
    lines = _summary(model, input_shape=(3, 4))
    assert lines[1] == "Input shape: (None, 3, 4)"
    assert [re.split(r"  +", line.strip())[2] for line in lines[5:7]] == ["(None, 12)", "(None, 2)"]
    shapes = _summary(Sequential([Conv2D(3, 2, 3), GlobalAvgPool2D()], device="cpu"), input_shape=(3, 8, 10))
    assert "(None, 2, 6, 8)" in shapes[5] and "(None, 2)" in shapes[6]
    shapes = _summary(Sequential([AvgPool2D(2)], device="cpu"), input_shape=(1, 4, 4))
    assert "(None, 1, 2, 2)" in shapes[5]


def test_summary_refuses_a_shape_the_layers_do_not_take():
    with pytest.raises(ValueError, match=r"summary: layer 1, Dense\(in_features=12.*does not take input of shape "
                                         r"\(None, 15\)"):
        Sequential([Flatten(), Dense(12, 2)], device="cpu").summary(input_shape=(3, 5))
    with pytest.raises(ValueError, match=r"input_shape is one sample's shape"):
        Sequential([Flatten(), Dense(12, 2)], device="cpu").summary(input_shape=(0, 5))


def test_summary_shows_what_a_layer_of_your_own_tells_and_guesses_nothing():
    """A layer that does not tell its output's shape gets ``?``, and every layer after it too: a shape kept by
    default would be wrong for this one, and Dense(2, 1) after it would seem not to fit."""
    class Pick(xpnet.Layer):  # keeps two columns, and does not say so
        def forward(self, x, training=False):
            return x[:, :2]

    class Told(Pick):
        def compute_output_shape(self, input_shape):
            return (input_shape[0], 2)

    for layer, shapes in ((Pick(), ["(None, 5)", "?", "?"]), (Told(), ["(None, 5)", "(None, 2)", "(None, 1)"])):
        lines = _summary(Sequential([Dense(4, 5), layer, Dense(2, 1)], device="cpu"))
        assert lines[1] == "Input shape: (None, 4) (from Dense)"
        assert [re.split(r"  +", line.strip())[2] for line in lines[5:8]] == shapes
    assert _summary(Sequential([Pick(), Dense(2, 1)], device="cpu"))[1].startswith("Input shape: ? (not known")


def test_summary_between_forward_and_backward_changes_no_gradient(dev):
    """The shapes come from copies of the layers: the caches backward reads stay the training batch's."""
    rng = np.random.default_rng(0)
    X, dy = rng.normal(size=(5, 36)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    grads = []
    for look in (False, True):
        model = _cnn(dev)
        model.forward(dev.asarray(X), training=True)
        if look:
            _summary(model)
        model.backward(dev.asarray(dy))
        grads.append({k: xpnet.to_numpy(v) for k, v in model.gradients().items()})
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k])


# -- named_parameters() -------------------------------------------------------------------------------
def test_named_parameters_yields_name_array_pairs_and_parameters_stays_a_dict(dev):
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2, bias=False)], device=dev, seed=0)
    pairs = model.named_parameters()
    assert next(pairs)[0] == "0.W"  # an iterator, as PyTorch's
    pairs = list(model.named_parameters())
    assert [name for name, _ in pairs] == ["0.W", "0.b", "2.W"] == list(model.parameters())
    assert all(array is model.parameters()[name] for name, array in pairs)
    assert [tuple(a.shape) for a in model.parameters().values()] == [(4, 3), (3,), (3, 2)]
