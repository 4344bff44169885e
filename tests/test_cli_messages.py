"""What the ``xpnet`` command says when something is off: each message names the fix in the command's own
terms (an option, not a Python argument), and warnings read as the command's own lines.

Tiny data only: a model built from the presets, small IDX files with the module's sums patched to match.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import cli, datasets
from xpnet.cli.presets import cnn_network
from xpnet.layers import Conv2D, Dense, Flatten, Reshape
from conftest import run_main

pytestmark = pytest.mark.usefixtures("cli_environment")


# -- xpnet export: the input shape ----------------------------------------------------------------------
def test_export_of_the_cnn_preset_needs_no_input_shape(tmp_path, capsys):
    """The cnn preset starts with Reshape((1, side, side)) on flat rows: the file tells the shape."""
    onnx = pytest.importorskip("onnx", reason="the onnx package is not installed: pip install 'xpnet[onnx]'")
    stack = cnn_network(64, 3, 8, "relu", "softmax_cross_entropy", 0.0, False, "x")
    model = xpnet.Sequential(stack, device="cpu", seed=0)
    model.metadata = {"model": "cnn", "layers": [64, 8, 3]}  # as xpnet train --model cnn --save writes it
    xpnet.save(model, tmp_path / "cnn.npz")
    code, out, err = run_main(capsys, "export", str(tmp_path / "cnn.npz"), "--onnx", str(tmp_path / "cnn.onnx"))
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {tmp_path / 'cnn.onnx'}: ") and "input 'input' (batch, 64)" in out
    onnx.checker.check_model(onnx.load(str(tmp_path / "cnn.onnx")), full_check=True)
    ort = pytest.importorskip("onnxruntime")
    rows = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    got = ort.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": rows})[0]
    np.testing.assert_allclose(got, xpnet.to_numpy(model.predict(rows)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layers, example", [
    ([Flatten(), Dense(4, 2)], "--input-shape 28,28"),
    ([Conv2D(1, 2, 3), Flatten(), Dense(2, 2)], "--input-shape 1,28,28 (channels, height, width)"),
    ([Reshape((-1, 4)), Flatten(), Dense(4, 2)], "--input-shape 784"),
], ids=["Flatten", "Conv2D", "Reshape-with-minus-1"])
def test_export_asks_for_the_option_not_the_python_argument(tmp_path, capsys, layers, example):
    path = tmp_path / "m.npz"
    xpnet.save(xpnet.Sequential(layers, device="cpu", seed=0), path)
    code, out, err = run_main(capsys, "export", str(path), "--onnx", str(tmp_path / "m.onnx"))
    first = type(layers[0]).__name__
    assert (code, out) == (1, "")
    assert err == (f"xpnet: error: {path} starts with {first}, so the shape of one sample is not known: pass it "
                   f"with --input-shape, e.g. {example}\n")
    assert not (tmp_path / "m.onnx").exists()


def test_export_of_activations_alone_takes_any_width(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the onnx package is not installed: pip install 'xpnet[onnx]'")
    xpnet.save(xpnet.Sequential([xpnet.Tanh()], device="cpu"), tmp_path / "m.npz")
    code, out, err = run_main(capsys, "export", str(tmp_path / "m.npz"), "--onnx", str(tmp_path / "m.onnx"))
    assert (code, err) == (0, "") and "input 'input' (batch, features)" in out


class Halve(xpnet.Layer):
    """A layer of the user's that tells no shapes (registered in the test that loads it)."""

    def forward(self, x, training=False):
        return 0.5 * x


def test_evaluate_asks_the_layers_for_the_widths(tmp_path, capsys, monkeypatch):
    """Rows go to a model that starts with Flatten; one that starts with a convolution says it takes images; where
    the layers do not tell the output's width, one row through the model does."""
    monkeypatch.setitem(xpnet.layers.LAYERS, "Halve", Halve)
    args = ("--dataset", "spirals", "--loss", "softmax_cross_entropy", "--device", "cpu")
    for name, layers in (("flat", [Flatten(), Dense(2, 3)]), ("own", [Dense(2, 3), Halve()]),
                         ("conv", [Conv2D(1, 2, 1), Flatten(), Dense(2, 3)])):
        xpnet.save(xpnet.Sequential(layers, device="cpu", seed=0), tmp_path / f"{name}.npz")
        code, out, err = run_main(capsys, "evaluate", str(tmp_path / f"{name}.npz"), *args)
        if name == "conv":
            assert code == 1 and err.startswith("xpnet: error: Conv2D(in_channels=1") and "NCHW" in err, err
        else:
            assert (code, err) == (0, "") and out.startswith("test loss "), err


# -- warnings: the command's own lines ---------------------------------------------------------------------
def _warns_thrice(args):
    warnings.warn("fit: something worth knowing", UserWarning)
    warnings.warn("fit: something worth knowing", UserWarning)  # another line: Python would show it again
    warnings.warn("a library's note\n  on two lines", RuntimeWarning)
    return 0


def test_warnings_print_as_the_commands_lines_once_each(monkeypatch, capsys):
    monkeypatch.setattr(cli.parser, "cmd_info", _warns_thrice)  # build_parser reads its commands at each call
    code, out, err = run_main(capsys, "info")
    assert (code, out) == (0, "")
    assert err == ("xpnet: warning: fit: something worth knowing\n"
                   "xpnet: warning: RuntimeWarning: a library's note; on two lines\n")
    with warnings.catch_warnings(record=True) as seen:  # --debug: Python's own warnings, with their place
        warnings.simplefilter("always")
        code, _, err = run_main(capsys, "info", "--debug")
    assert [(w.category, str(w.message)) for w in seen] == [
        (UserWarning, "fit: something worth knowing"), (UserWarning, "fit: something worth knowing"),
        (RuntimeWarning, "a library's note\n  on two lines")]
    assert "xpnet: warning:" not in err


def test_the_python_api_keeps_real_warnings(monkeypatch, capsys):
    """main() puts the warning display back: a later warning from the library is a Python warning again."""
    before = warnings.showwarning
    monkeypatch.setattr(cli.parser, "cmd_info", _warns_thrice)
    run_main(capsys, "info")
    assert warnings.showwarning is before
    model = xpnet.Sequential([Dense(2, 2)], device="cpu", seed=0)
    model.fit(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), loss="softmax_cross_entropy", verbose=0)
    with pytest.warns(UserWarning, match="^predict: X holds values from 255 to 255"):
        model.predict(np.full((1, 2), 255.0, np.float32))


def test_a_real_warning_from_the_installed_command(tmp_path):
    """End to end, in a process of its own: evaluate on inputs far from the trained range warns in one line
    of the command's, not "<frozen runpy>:88: UserWarning ..." or the launcher's "sys.exit(main())"."""
    X, y = datasets.load("spirals", split="train")
    model = xpnet.Sequential([Dense(2, 3)], device="cpu", seed=0)
    model.fit(X * 0.01, y, loss="softmax_cross_entropy", epochs=1, verbose=0)  # trained on a tiny range
    model.save(tmp_path / "m.npz")
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_DEVICE", "XPNET_BACKEND")}
    done = subprocess.run([sys.executable, "-m", "xpnet", "evaluate", str(tmp_path / "m.npz"), "--dataset",
                           "spirals", "--device", "cpu"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xpnet: warning: evaluate: X holds values from "), done.stderr
    assert "UserWarning" not in done.stderr and "main()" not in done.stderr


# -- evaluate needs only the test files; what --no-download says ------------------------------------------
def _idx(arr, magic) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


@pytest.fixture
def test_files_only(tmp_path, monkeypatch):
    """A data folder holding only MNIST's two t10k files (3 tiny images), the sums patched to match, and a
    784-10 model saved as the tutorial's. No $XPNET_DATA: its real files would fill the gaps."""
    monkeypatch.delenv("XPNET_DATA", raising=False)
    rng = np.random.default_rng(0)
    files = {"t10k-images-idx3-ubyte.gz": gzip.compress(_idx(rng.integers(0, 256, (3, 28, 28)), 0x803)),
             "t10k-labels-idx1-ubyte.gz": gzip.compress(_idx([7, 2, 1], 0x801))}
    sums = dict(datasets.SHA256["mnist"], **{k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    monkeypatch.setitem(datasets.SHA256, "mnist", sums)
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    for name, data in files.items():
        (tmp_path / "data" / "mnist" / name).write_bytes(data)
    model = xpnet.Sequential([Dense(784, 10)], device="cpu", seed=0)
    model.metadata = {"dataset": "mnist", "scale": "tutorial", "loss": "softmax_cross_entropy"}
    model.save(tmp_path / "m.npz")
    return tmp_path


def test_evaluate_reads_only_the_test_files(test_files_only, capsys):
    root = test_files_only
    code, out, err = run_main(capsys, "evaluate", str(root / "m.npz"), "--data-dir", str(root / "data"),
                              "--no-download", "--device", "cpu")
    assert (code, err) == (0, ""), err
    assert out.startswith("test loss ") and "(3 samples of mnist, softmax_cross_entropy, cpu (numpy))" in out


def test_no_download_names_the_missing_files_and_the_fix(test_files_only, capsys):
    root, cache = test_files_only, test_files_only / "cache" / "mnist"
    code, out, err = run_main(capsys, "evaluate", str(root / "m.npz"), "--data-dir", str(root / "data"),
                              "--no-download", "--device", "cpu", "--split", "train")
    train = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz"
    assert (code, out) == (1, "")
    assert err == (f"xpnet: error: mnist data not found, and downloads are off (--no-download, or download=False): "
                   f"missing {train}; looked in: {root / 'data' / 'mnist'}, {root / 'data'}, {cache}; fix: drop "
                   f"--no-download (or pass download=True) to download them into {cache}, or put the files "
                   f"({train}) in <dir>/mnist/ and pass --data-dir <dir> or set XPNET_DATA=<dir>\n")
