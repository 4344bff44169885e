"""Every script in examples/ runs (as a subprocess, small settings) and prints what it is meant to show."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, env=None, timeout=120):
    environ = {k: v for k, v in os.environ.items() if k not in ("XPNET_DEVICE", "XPNET_BACKEND")}
    environ.update(env or {})
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=environ)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_example_is_tested():
    tested = {"perceptron.py", "xor.py", "two_layer_toy.py", "appended_bias.py", "softmax_from_scratch.py",
              "mnist_tutorial.py", "mnist_cnn.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("backend", ["numpy", "array-api-strict"])
def test_perceptron(backend):
    out = run_example("perceptron.py", "--device", "cpu", "--backend", backend)
    assert re.search(r"^AND: .* 4/4 correct, accuracy 1.00 -> learned", out, re.M), out
    assert re.search(r"^OR : .* 4/4 correct, accuracy 1.00 -> learned", out, re.M), out
    xor = re.search(r"^XOR: .* ([0-4])/4 correct, accuracy [\d.]+ -> NOT learned", out, re.M)
    assert xor and int(xor.group(1)) <= 3, out
    assert "XOR is not linearly separable" in out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_xor(backend):
    pytest.importorskip(backend)
    out = run_example("xor.py", "--device", "cpu", "--backend", backend)
    assert out.strip().endswith("4/4 correct"), out
    assert "1 XOR 1 = 0   network: 0.0" in out


def test_two_layer_toy_prints_the_seeds_numbers():
    out = run_example("two_layer_toy.py", "--device", "cpu")
    numbers = re.findall(r"-?\d+\.\d{3}", out)
    assert numbers[:4] == ["0.758", "0.771", "0.791", "0.801"], out  # the seed's "Intial Ouput"
    assert numbers[4:8] == ["0.028", "0.925", "0.925", "0.090"], out  # and its trained output
    assert numbers[-1] == "0.925"  # [1, 0, 1]


def test_two_layer_toy_on_strict_float32():
    out = run_example("two_layer_toy.py", "--device", "cpu", "--backend", "array-api-strict", "--dtype", "float32",
                      "--epochs", "1000")
    assert "cpu (array-api-strict) (float32)" in out
    assert re.findall(r"-?\d+\.\d{3}", out)[4:8] == ["0.028", "0.925", "0.925", "0.090"], out


@pytest.mark.parametrize("backend, dtype", [("numpy", "float64"), ("array-api-strict", "float32")])
def test_appended_bias(backend, dtype):
    out = run_example("appended_bias.py", "--device", "cpu", "--backend", backend, "--dtype", dtype)
    diffs = [float(d) for d in re.findall(r"\|diff\| = (\S+)", out)]
    assert len(diffs) == 4 and max(diffs) <= (1e-12 if dtype == "float64" else 1e-5), out
    assert out.strip().endswith("same outputs and gradients")


def test_softmax_from_scratch_on_spirals(tmp_path):
    out = run_example("softmax_from_scratch.py", "--device", "cpu", "--dataset", "spirals", "--epochs", "150",
                      env={"XPNET_CACHE": str(tmp_path)})
    acc = float(re.search(r"^test accuracy ([\d.]+) on 60 samples", out, re.M).group(1))
    assert acc >= 0.8, out


def test_softmax_from_scratch_falls_back_to_spirals_without_data(tmp_path):
    environ = {"XPNET_DATA": str(tmp_path / "none"), "XPNET_CACHE": str(tmp_path / "cache")}
    out = run_example("softmax_from_scratch.py", "--device", "cpu", "--epochs", "5", env=environ)
    assert out.startswith("MNIST not found") and "spirals: 2-64-3" in out


def test_softmax_from_scratch_on_mnist(data_dir):
    out = run_example("softmax_from_scratch.py", "--device", "cpu", "--limit", "3000",
                      env={"XPNET_DATA": data_dir})
    assert out.startswith("mnist: 784-100-10")
    assert float(re.search(r"^test accuracy ([\d.]+)", out, re.M).group(1)) >= 0.7, out


def test_mnist_tutorial_quick(data_dir, tmp_path):
    png = tmp_path / "backquery.png"
    out = run_example("mnist_tutorial.py", "--device", "cpu", "--limit", "3000", "--out", str(png),
                      env={"XPNET_DATA": data_dir})
    per_sample = float(re.search(r"per-sample test accuracy after 1 epoch\(s\): ([\d.]+)", out).group(1))
    batched = float(re.search(r"^2\. Sequential.*test accuracy ([\d.]+)", out, re.M).group(1))
    assert per_sample >= 0.8 and batched >= 0.5, out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in out
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"saved to {png}" in out


def test_mnist_cnn_quick(data_dir):
    out = run_example("mnist_cnn.py", "--device", "cpu", "--limit", "512", "--epochs", "2", "--batch-size", "64",
                      env={"XPNET_DATA": data_dir}, timeout=300)
    assert "mnist: 512 training images of shape (1, 28, 28), 512 test; 1199882 weights on cpu (numpy)" in out
    assert re.search(r"^epoch 2/2: loss [\d.]+  test accuracy [\d.]+", out, re.M), out
    accuracy = float(re.search(r"^test accuracy ([\d.]+) after 2 epoch\(s\)", out, re.M).group(1))
    assert accuracy > 0.5, out  # 16 steps on 512 images; chance is 0.1
