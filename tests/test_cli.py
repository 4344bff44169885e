"""The ``xpnet`` command: exit codes, one-line errors, and train / evaluate / predict / info end to end.

Most tests call ``xpnet.cli.main`` in-process (fast); the ones about the real process (``python -m
xpnet``, exit codes, no traceback on stderr) run it as a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import xpnet
from xpnet import cli, datasets
from conftest import run_main

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  loss [\d.]+  train acc [\d.]+  test loss [\d.]+  test acc ([\d.]+)  "
                        r"[\d,]+ samples/s  [\d.]+ s  cpu \(numpy\)$", re.M)
pytestmark = pytest.mark.usefixtures("cli_environment")


def xpnet_cmd(*args, env=None, timeout=120):
    """Run ``python -m xpnet ARGS`` and return the CompletedProcess (text output)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("XPNET_DEVICE", "XPNET_BACKEND")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True,
                          timeout=timeout, env=environ)


# -- the real process ---------------------------------------------------------------------------
def test_train_mnist_subprocess(data_dir):
    proc = xpnet_cmd("train", "--dataset", "mnist", "--limit", "500", "--epochs", "1", "--device", "cpu",
                     "--quiet", env={"XPNET_DATA": data_dir})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and EPOCH_LINE.match(lines[0]), proc.stdout
    assert proc.stderr == ""


def test_train_spirals_needs_no_data(tmp_path):
    proc = xpnet_cmd("train", "--dataset", "spirals", "--epochs", "2", "--device", "cpu",
                     env={"XPNET_DATA": str(tmp_path / "nothing")})
    assert proc.returncode == 0, proc.stderr
    assert "training 2-512-256-3 (relu hidden, linear output)" in proc.stdout
    assert [m.group(1) for m in EPOCH_LINE.finditer(proc.stdout)] == ["1", "2"]


def test_cuda_here_is_one_line_exit_1():
    if xpnet.available_backends()["cupy"].startswith("ok"):
        pytest.skip("this machine has a usable CUDA GPU")
    proc = xpnet_cmd("train", "--dataset", "spirals", "--device", "cuda")
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("xpnet: error: cuda:0 was requested but ")
    assert "CuPy" in lines[0] and "Traceback" not in proc.stderr


def test_debug_shows_the_traceback():
    if xpnet.available_backends()["cupy"].startswith("ok"):
        pytest.skip("this machine has a usable CUDA GPU")
    proc = xpnet_cmd("train", "--dataset", "spirals", "--device", "cuda", "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "DeviceUnavailableError" in proc.stderr


@pytest.mark.parametrize("args", [
    [],
    ["fly"],
    ["train", "--epochs", "0"],
    ["train", "--device", "tpu"],
    ["train", "--device", "gpu:x"],
    ["train", "--backend", "mxnet"],
    ["train", "--layers", "784,abc,10"],
    ["train", "--layers", "784"],
    ["train", "--dataset", "cifar"],
    ["train", "--lr", "-1"],
    ["predict", "model.npz"],  # --input is required
    ["evaluate"],
])
def test_usage_errors_exit_2(args):
    proc = xpnet_cmd(*args)
    assert proc.returncode == 2, (args, proc.stderr)
    assert "usage: xpnet" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "info"])
def test_help(command):
    proc = xpnet_cmd(command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"usage: xpnet {command}")
    description = proc.stdout.split("\n\n")[1].split(".")[0]
    assert description.split()[0] in ("Train", "Report", "Print", "Show"), description


def test_version():
    proc = xpnet_cmd("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"xpnet {xpnet.__version__}"


# -- in-process ---------------------------------------------------------------------------------
def test_info(capsys):
    code, out, _ = run_main(capsys, "info")
    assert code == 0
    for text in (f"xpnet {xpnet.__version__}", f"numpy {np.__version__}", "array-api-compat ", "backends:",
                 "numpy             ok", "CUDA devices: ", "device auto -> "):
        assert text in out, text
    if not xpnet.available_backends()["cupy"].startswith("ok"):
        assert "CUDA devices: none (" in out


def test_info_says_what_threads_would_use(capsys):
    from threadpoolctl import threadpool_limits

    from xpnet.distributed.threads import usable_cores

    with threadpool_limits(limits=1, user_api="blas"):
        code, out, _ = run_main(capsys, "info")
    line = next(line for line in out.splitlines() if line.startswith("CPU (--threads): "))
    assert line.startswith(f"CPU (--threads): {usable_cores()} usable cores; BLAS threads: ")
    assert line.endswith(" x1"), line  # NumPy's BLAS is loaded, and its count is read now, not at start


def test_layers_must_match_the_data(capsys):
    code, out, err = run_main(capsys, "train", "--dataset", "spirals", "--layers", "3,10,3", "--device", "cpu")
    assert code == 1
    assert err.strip() == ("xpnet: error: --layers starts with 3 inputs, but spirals has 2 features per sample: "
                           "use --layers 2,10,3")
    code, _, err = run_main(capsys, "train", "--dataset", "spirals", "--layers", "2,10,2", "--device", "cpu")
    assert code == 1 and "end --layers with 3" in err


def test_missing_data_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("XPNET_DATA", raising=False)
    code, out, err = run_main(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                              "--no-download", "--device", "cpu")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("xpnet: error: mnist data not found")


@pytest.mark.parametrize("loss, optimizer", [("mse", "sgd"), ("softmax_cross_entropy", "adam"),
                                             ("binary_cross_entropy", "momentum")])
def test_train_losses_and_optimizers(capsys, loss, optimizer):
    code, out, err = run_main(capsys, "train", "--dataset", "spirals", "--loss", loss, "--optimizer", optimizer,
                              "--epochs", "3", "--batch-size", "8", "--activation", "relu", "--device", "cpu",
                              "--backend", "array-api-strict")
    assert code == 0, err
    assert out.count("epoch ") == 3 and "cpu (array-api-strict)" in out


def test_diverging_training_is_one_line(capsys):
    code, out, err = run_main(capsys, "train", "--dataset", "moons", "--layers", "2,8,2", "--loss",
                              "softmax_cross_entropy", "--activation", "relu", "--lr", "1e30", "--epochs", "3",
                              "--device", "cpu", "--quiet")
    assert code == 1 and err.startswith("xpnet: error: training diverged") and len(err.splitlines()) == 1
    assert out == ""


@pytest.fixture
def spirals_model(tmp_path, capsys):
    """A spirals model trained and saved by the CLI: (path, its in-process model)."""
    path = tmp_path / "spirals.npz"
    code, out, err = run_main(capsys, "train", "--dataset", "spirals", "--loss", "softmax_cross_entropy",
                              "--optimizer", "adam", "--lr", "0.01", "--epochs", "30", "--batch-size", "16",
                              "--layers", "2,32,3", "--device", "cpu", "--save", str(path))
    assert code == 0, err
    assert f"saved the model to {path}" in out
    return path, xpnet.load(path, device="cpu")


def test_save_then_evaluate(spirals_model, capsys):
    path, model = spirals_model
    assert model.metadata["dataset"] == "spirals" and model.metadata["loss"] == "softmax_cross_entropy"
    code, out, err = run_main(capsys, "evaluate", str(path), "--device", "cpu")  # the model's dataset
    assert code == 0, err
    (X, y), (X_test, y_test) = datasets.load("spirals")
    expected = model.evaluate(X_test, y_test, loss="softmax_cross_entropy")
    assert out.startswith(f"test loss {expected['loss']:.4f}  accuracy {expected['accuracy']:.4f}  "
                          f"(60 samples of spirals")


def test_save_then_evaluate_on_torch(spirals_model, capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'xpnet[torch]')")
    path, model = spirals_model
    code, out, err = run_main(capsys, "evaluate", str(path), "--dataset", "spirals", "--split", "train",
                              "--backend", "torch", "--device", "cpu")
    assert code == 0, err
    (X, y), _ = datasets.load("spirals")
    expected = model.evaluate(X, y, loss="softmax_cross_entropy")  # on NumPy
    # torch's float32 kernels round otherwise (~1e-7): a printed figure may end one digit off, never more
    printed = re.match(r"train loss (\d+\.\d{4})  accuracy (\d\.\d{4})", out)
    assert printed, out
    assert float(printed[1]) == pytest.approx(expected["loss"], abs=5e-5 + 1e-6)
    assert float(printed[2]) == pytest.approx(expected["accuracy"], abs=5e-5)
    assert "cpu (torch)" in out


def test_predict_npy_and_csv(spirals_model, tmp_path, capsys):
    path, model = spirals_model
    (_, _), (X_test, _) = datasets.load("spirals")
    expected = xpnet.to_numpy(model.predict(X_test)).argmax(axis=1)
    np.save(tmp_path / "x.npy", X_test)
    code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "x.npy"), "--device", "cpu")
    assert code == 0, err
    assert [int(s) for s in out.split()] == expected.tolist()
    np.savetxt(tmp_path / "x.csv", X_test[:5], delimiter=",")
    code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "x.csv"), "--device", "cpu")
    assert code == 0 and [int(s) for s in out.split()] == expected[:5].tolist()


def test_predict_takes_the_loss_of_an_older_file_from_its_metadata(tmp_path, capsys):
    # One logit output trained with binary_cross_entropy: class 1 where the logit crosses 0 (not 0.5), a
    # file from before the loss had its own field keeps the loss in its metadata only.
    model = xpnet.Sequential([xpnet.Dense(1, 1)], device="cpu", seed=0)
    model.load_state_dict({k: np.ones(v.shape, dtype=np.float32) if k.endswith("W") else np.zeros(v.shape, np.float32)
                           for k, v in model.parameters().items()})
    model.save(tmp_path / "m.npz", metadata={"loss": "binary_cross_entropy"})
    np.save(tmp_path / "x.npy", np.array([[-0.5], [0.25], [0.75]], dtype=np.float32))
    code, out, err = run_main(capsys, "predict", str(tmp_path / "m.npz"), "--input", str(tmp_path / "x.npy"),
                              "--device", "cpu")
    assert (code, out.split()) == (0, ["0", "1", "1"]), err


def test_evaluate_and_predict_errors(spirals_model, tmp_path, capsys):
    path, _ = spirals_model
    code, _, err = run_main(capsys, "evaluate", str(tmp_path / "nope.npz"), "--dataset", "spirals")
    assert code == 1 and err.strip() == f"xpnet: error: no such model file: {tmp_path / 'nope.npz'}"
    (tmp_path / "junk.npz").write_bytes(b"junk")
    code, _, err = run_main(capsys, "evaluate", str(tmp_path / "junk.npz"), "--dataset", "spirals")
    assert code == 1 and "not an xpnet model file" in err and len(err.splitlines()) == 1
    np.save(tmp_path / "wide.npy", np.zeros((2, 5)))
    code, _, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "wide.npy"))
    assert code == 1 and "rows of 5 values, but the model takes 2 inputs" in err
    (tmp_path / "x.txt.gz").write_bytes(b"")
    code, _, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "x.txt.gz"))
    assert code == 1 and ".npy or .csv" in err
    (tmp_path / "bad.csv").write_text("1,2\n3,x\n")
    code, _, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "bad.csv"))
    assert code == 1 and "not comma-separated numbers" in err


def test_mnist_save_evaluate_predict(data_dir, tmp_path, capsys):
    path = tmp_path / "mnist.npz"
    code, out, err = run_main(capsys, "train", "--model", "tutorial", "--data-dir", data_dir, "--limit", "2000",
                              "--device", "cpu", "--save", str(path))
    assert code == 0, err
    assert ("training 784-200-10 (sigmoid hidden, sigmoid output), mse, sgd lr 0.1, constant schedule, batch 1, "
            "on mnist") in out
    test_acc = float(EPOCH_LINE.search(out).group(3))
    assert test_acc > 0.7
    code, out, _ = run_main(capsys, "evaluate", str(path), "--data-dir", data_dir, "--limit", "2000")
    assert code == 0 and f"accuracy {test_acc:.4f}" in out
    # predict on the tutorial CSV: label column first, raw 0..255 pixels
    csv = os.path.join(data_dir, "mnist-csv", "mnist_test_10.csv")
    code, out, err = run_main(capsys, "predict", str(path), "--input", csv)
    assert code == 0, err
    labels = np.loadtxt(csv, delimiter=",", dtype=int)[:, 0]
    assert (np.array([int(s) for s in out.split()]) == labels).mean() >= 0.7


def test_main_without_subprocess_handles_keyboard_interrupt(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.parser, "cmd_info", interrupted)
    code, _, err = run_main(capsys, "info")
    assert code == 130 and err.strip() == "xpnet: interrupted"


@pytest.mark.parametrize("quiet", [False, True])
def test_train_quiet_keeps_downloads_quiet_too(capsys, monkeypatch, quiet):
    from xpnet.datasets import files

    seen = []
    monkeypatch.setattr(cli.parser, "cmd_train", lambda args: seen.append(files._QUIET.get()) or 0)
    code, _, _ = run_main(capsys, "train", "--dataset", "spirals", *(["--quiet"] if quiet else []))
    assert code == 0 and seen == [quiet]
