"""``xpnet train``'s presets and toolkit options: --model, --dropout, --batchnorm, --schedule, --warmup,
--weight-decay, --val-split, --early-stopping, --checkpoint-dir/--resume and --plot, end to end in-process."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xpnet
from xpnet import cli
from xpnet.cli.parser import build_parser
from xpnet.cli.presets import PRESETS, apply_preset
from conftest import run_main

SPIRALS = ("train", "--dataset", "spirals", "--device", "cpu")
pytestmark = pytest.mark.usefixtures("cli_environment")


def _trained(capsys, tmp_path, *args, name="m.npz"):
    path = tmp_path / name
    code, out, err = run_main(capsys, *SPIRALS, *args, "--save", str(path))
    assert code == 0, err
    return xpnet.load(path, device="cpu"), out


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_the_default_is_the_mlp_preset(capsys, tmp_path):
    model, out = _trained(capsys, tmp_path, "--epochs", "1")
    assert ("training 2-512-256-3 (relu hidden, linear output), softmax_cross_entropy, adamw lr 0.003 weight decay "
            "0.01, cosine schedule, batch 128, on spirals") in out
    assert _kinds(model) == ["Dense", "ReLU", "Dense", "ReLU", "Dense"]
    assert model.metadata["model"] == "mlp" and model.metadata["optimizer"] == "adamw"


def test_the_tutorial_preset_is_the_books_network(capsys, tmp_path):
    model, out = _trained(capsys, tmp_path, "--model", "tutorial", "--epochs", "1")
    assert "training 2-200-3 (sigmoid hidden, sigmoid output), mse, sgd lr 0.1, constant schedule, batch 1," in out
    assert _kinds(model) == ["Dense", "Sigmoid", "Dense", "Sigmoid"]


def test_the_cnn_preset_is_the_classic_convnet():
    from xpnet.cli.presets import cnn_network

    args = build_parser().parse_args(["train", "--model", "cnn"])
    apply_preset(args)
    assert (args.optimizer, args.lr, args.schedule, args.batch_size, args.dropout) == (
        "adamw", 0.001, "cosine", 128, (0.25, 0.5))
    stack = cnn_network(784, 10, 128, "relu", "softmax_cross_entropy", args.dropout, False, "mnist")
    assert _kinds(xpnet.Sequential(stack)) == ["Reshape", "Conv2D", "ReLU", "Conv2D", "ReLU", "MaxPool2D", "Dropout",
                                               "Flatten", "Dense", "ReLU", "Dropout", "Dense"]
    assert [layer.p for layer in stack if isinstance(layer, xpnet.Dropout)] == [0.25, 0.5]
    assert stack[0].shape == (1, 28, 28) and stack[8].in_features == 64 * 12 * 12
    with_bn = cnn_network(784, 10, 128, "relu", "mse", 0.1, True, "mnist")
    assert _kinds(xpnet.Sequential(with_bn)) == ["Reshape", "Conv2D", "BatchNorm2d", "ReLU", "Conv2D", "BatchNorm2d",
                                                 "ReLU", "MaxPool2D", "Dropout", "Flatten", "Dense", "BatchNorm1d",
                                                 "ReLU", "Dropout", "Dense", "Sigmoid"]


def test_the_cnn_preset_refuses_what_it_cannot_build(capsys):
    code, out, err = run_main(capsys, *SPIRALS, "--model", "cnn")
    assert code == 1 and "--model cnn takes square images" in err and "spirals has 2 features" in err
    code, out, err = run_main(capsys, *SPIRALS, "--model", "cnn", "--layers", "2,8,3")
    assert code == 1 and "--model cnn has its own" in err


def test_the_cnn_preset_trains_and_its_file_evaluates_on_rows(data_dir, capsys, tmp_path):
    path = tmp_path / "cnn.npz"
    code, out, err = run_main(capsys, "train", "--model", "cnn", "--dataset", "mnist", "--data-dir", data_dir,
                              "--device", "cpu", "--limit", "512", "--batch-size", "64", "--save", str(path))
    assert code == 0, err
    assert "training 28x28 conv32-conv64-maxpool-128-10 (relu hidden, dropout 0.25/0.5, linear output)" in out
    acc = float(re.search(r"test acc ([\d.]+)", out).group(1))
    assert acc > 0.3, out  # 8 steps on 512 images; chance is 0.1
    model = xpnet.load(path, device="cpu")
    assert model.metadata["model"] == "cnn" and model.metadata["dropout"] == [0.25, 0.5]
    code, out, err = run_main(capsys, "evaluate", str(path), "--data-dir", data_dir, "--limit", "512",
                              "--device", "cpu")
    assert code == 0 and f"accuracy {acc:.4f}" in out, (out, err)


def test_options_override_the_preset():
    args = build_parser().parse_args(["train", "--model", "tutorial", "--optimizer", "adam", "--batch-size", "7"])
    apply_preset(args)
    assert (args.optimizer, args.lr, args.batch_size, args.activation) == ("adam", 0.001, 7, "sigmoid")
    args = build_parser().parse_args(["train", "--lr", "0.5"])
    apply_preset(args)
    assert (args.optimizer, args.lr, args.schedule) == (PRESETS["mlp"]["optimizer"], 0.5, "cosine")


def test_dropout_and_batchnorm_go_after_each_hidden_layer(capsys, tmp_path):
    model, out = _trained(capsys, tmp_path, "--dropout", "0.2", "--batchnorm", "--epochs", "1")
    assert _kinds(model) == ["Dense", "BatchNorm1d", "ReLU", "Dropout",
                             "Dense", "BatchNorm1d", "ReLU", "Dropout", "Dense"]
    assert model.layers[3].p == 0.2
    # the running statistics were trained and saved: not the initial zeros and ones
    assert not np.all(xpnet.to_numpy(model.layers[1].buffers["running_mean"]) == 0)
    assert "dropout 0.2, batchnorm" in out


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "exponential"])
def test_each_schedule_trains_and_is_recorded(capsys, tmp_path, schedule):
    warmup = ("--warmup", "1") if schedule == "cosine" else ()
    model, out = _trained(capsys, tmp_path, "--schedule", schedule, *warmup, "--epochs", "3", "--batch-size", "60")
    assert f"{schedule} schedule{' after 1 warm-up epochs' if warmup else ''}, batch 60" in out
    assert model.metadata["schedule"] == schedule


def test_warmup_needs_the_cosine_schedule(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*SPIRALS, "--schedule", "step", "--warmup", "1"])
    assert exc.value.code == 2 and "--warmup goes with --schedule cosine" in capsys.readouterr().err
    code, _, err = run_main(capsys, *SPIRALS, "--warmup", "2", "--epochs", "2")
    assert code == 1 and "the cosine needs steps after the warm-up" in err


def _rates(*argv, steps_per_epoch=10):
    from xpnet.cli.presets import schedule_from

    args = build_parser().parse_args(["train", *argv])
    apply_preset(args)
    sched = schedule_from(args, 0.003, steps_per_epoch)
    assert sched.per == "step"
    return [sched(t) for t in range(args.epochs * steps_per_epoch)]


def test_the_cli_schedules_over_the_run():
    # cosine: a linear warm-up over the first epoch's 10 steps, then from 0.003 down to ~0 at step 40
    lr = _rates("--epochs", "4", "--warmup", "1")
    assert lr[0] == pytest.approx(0.003 * 0.01) and lr[0] < lr[5] < lr[9] < 0.003
    assert lr[10] == pytest.approx(0.003) and lr[25] == pytest.approx(0.0015) and lr[39] < 1e-5
    # step: a tenth after each third of the run (30 steps: at 10 and 20)
    lr = _rates("--epochs", "3", "--schedule", "step")
    assert lr[:10] == [0.003] * 10 and lr[10] == pytest.approx(3e-4) and lr[29] == pytest.approx(3e-5)
    # exponential: a hundredth of the rate at the end of the run
    lr = _rates("--epochs", "2", "--schedule", "exponential")
    assert lr[0] == 0.003 and lr[-1] == pytest.approx(0.003 * 0.01 ** (19 / 20))
    assert _rates("--schedule", "constant") == [0.003] * 10


def test_weight_decay_reaches_the_optimizer(capsys, tmp_path):
    _, out = _trained(capsys, tmp_path, "--optimizer", "adam", "--weight-decay", "0.05", "--epochs", "1")
    assert "adam lr 0.001 weight decay 0.05, cosine schedule" in out


def test_val_split_reports_validation_then_the_test_set(capsys):
    code, out, err = run_main(capsys, *SPIRALS, "--val-split", "0.25", "--epochs", "2")
    assert code == 0, err
    assert re.search(r"^epoch 2/2  loss [\d.]+  train acc [\d.]+  val loss [\d.]+  val acc [\d.]+  ", out, re.M)
    assert out.strip().splitlines()[-1].startswith("test loss ")


def test_early_stopping_stops_and_keeps_the_best(capsys):
    code, out, err = run_main(capsys, *SPIRALS, "--val-split", "0.25", "--early-stopping", "1", "--lr", "3",
                              "--schedule", "constant", "--epochs", "30")
    assert code == 0, err
    assert out.count("epoch ") < 30


def test_resume_from_a_checkpoint_ends_where_one_run_ends(capsys, tmp_path, monkeypatch):
    common = ("--epochs", "3", "--batch-size", "32", "--dropout", "0.1")
    whole, _ = _trained(capsys, tmp_path, *common, name="whole.npz")
    ckpt = tmp_path / "ckpt"
    line = xpnet.callbacks.EpochLine.on_epoch_end

    def interrupted(self, epoch, logs=None):  # Ctrl-C during the second epoch's report
        line(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(xpnet.callbacks.EpochLine, "on_epoch_end", interrupted)
    code, _, err = run_main(capsys, *SPIRALS, *common, "--checkpoint-dir", str(ckpt))
    assert code == 130 and (ckpt / "last.npz").exists()
    monkeypatch.undo()
    resumed, out = _trained(capsys, tmp_path, *common, "--resume", str(ckpt / "last.npz"), name="resumed.npz")
    assert out.count("epoch ") < 3  # it did not start again from the beginning
    for k, v in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def test_plot_draws_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'xpnet[plot]')")
    png = tmp_path / "curves.png"
    code, out, err = run_main(capsys, *SPIRALS, "--epochs", "2", "--val-split", "0.2", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args", [["--dropout", "1"], ["--dropout", "-0.1"], ["--val-split", "1.5"],
                                  ["--warmup", "-1"], ["--weight-decay", "x"], ["--model", "resnet"],
                                  ["--schedule", "linear"], ["--early-stopping", "0"]])
def test_bad_toolkit_options_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *args])
    assert exc.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_threads_train_to_the_one_thread_weights(capsys, tmp_path, monkeypatch):
    """--threads 2: the same network and (to rounding) the same weights as one thread, and it says so."""
    from xpnet.distributed import threads

    ranks, make = [], threads.ThreadCommunicator
    monkeypatch.setattr(threads, "ThreadCommunicator", lambda group, rank: ranks.append(rank) or make(group, rank))
    one, _ = _trained(capsys, tmp_path, "--epochs", "2", name="one.npz")
    two, out = _trained(capsys, tmp_path, "--epochs", "2", "--threads", "2", name="two.npz")
    assert "2 threads (batch 128 over all)" in out and sorted(ranks) == [0, 1]
    for k, w in one.state_dict().items():
        np.testing.assert_allclose(two.state_dict()[k], w, rtol=2e-4, atol=2e-5, err_msg=k)


def test_threads_and_mpi_exclude_each_other(capsys):
    code, out, err = run_main(capsys, *SPIRALS, "--threads", "2", "--distributed")
    assert code != 0 and "exclude each other" in err


def test_the_saved_file_records_how_it_was_trained(capsys, tmp_path):
    """evaluate and predict read the scale and the loss back; the rest tells a reader how the model came about."""
    model, _ = _trained(capsys, tmp_path, "--epochs", "1", "--batchnorm", "--dropout", "0.1", "--limit", "64")
    assert model.metadata == {"dataset": "spirals", "scale": None, "loss": "softmax_cross_entropy", "classes": 3,
                              "layers": [2, 512, 256, 3], "model": "mlp", "activation": "relu", "optimizer": "adamw",
                              "lr": 0.003, "schedule": "cosine", "dropout": 0.1, "batchnorm": True, "epochs": 1,
                              "batch_size": 128, "seed": 0}
