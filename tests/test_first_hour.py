"""A newcomer's first hour: each thing that once gave a silent wrong answer, a traceback or a lost model.

Every test here failed before its fix (issue 8). The CLI tests call ``xpnet.cli.main`` in-process; the
examples run as scripts, the way a user starts them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import (MSE, SGD, BinaryCrossEntropy, Dense, ReLU, Sequential, Sigmoid, Softmax, SoftmaxCrossEntropy,
                   backend, cli, datasets)
from conftest import run_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("cli_environment")


def pixels(n=64, features=16, seed=0):
    """Fake images: uint8 pixels 0..255 and labels 0..2 that depend on them."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, features), dtype=np.uint8)
    y = (X[:, :3].argmax(axis=1)).astype(np.int64)
    return X, y


def tutorial_scale(X):
    return X.astype(np.float64) / 255 * 0.99 + 0.01


@pytest.fixture
def pixel_model(tmp_path):
    """A model trained on tutorial-scaled pixels, saved as 'xpnet train' saves one: (path, model)."""
    X, y = pixels()
    model = Sequential([Dense(16, 8), ReLU(), Dense(8, 3)], device="cpu", seed=0)
    model.fit(tutorial_scale(X).astype(np.float32), y, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.5), epochs=5,
              batch_size=8, verbose=0)
    model.metadata = {"scale": "tutorial"}
    path = tmp_path / "pixels.npz"
    xpnet.save(model, path)
    return path, model


# -- 1. the README's test command on a machine without torch ------------------------------------
def test_ci_runs_the_readme_test_command_verbatim_then_with_torch():
    readme = (ROOT / "README.md").read_text()
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert "bash ci/test.sh\n" in readme
    # the first test step is exactly what the README says, with no extra environment
    runs = [line for line in steps if "ci/test.sh" in line]
    assert runs == ["bash ci/test.sh", "XPNET_TEST_TORCH=1 XPNET_TEST_JAX=1 XPNET_TEST_OPTIONAL=1 bash ci/test.sh"]


# -- 2. predict's input contract ----------------------------------------------------------------
def test_predict_takes_float_input_as_already_scaled(pixel_model, tmp_path, capsys):
    path, model = pixel_model
    X, _ = pixels(seed=1)
    scaled = tutorial_scale(X).astype(np.float32)
    np.save(tmp_path / "floats.npy", scaled)
    code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "floats.npy"))
    assert code == 0, err
    expected = xpnet.to_numpy(model.predict(scaled)).argmax(axis=1)
    assert [int(s) for s in out.split()] == expected.tolist()


def test_predict_scales_integer_pixels_as_in_training(pixel_model, tmp_path, capsys):
    path, model = pixel_model
    X, _ = pixels(seed=1)
    np.save(tmp_path / "uint8.npy", X)
    np.savetxt(tmp_path / "ints.csv", X, delimiter=",", fmt="%d")
    expected = xpnet.to_numpy(model.predict(tutorial_scale(X).astype(np.float32))).argmax(axis=1).tolist()
    for name in ("uint8.npy", "ints.csv"):
        code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / name), "--device", "cpu")
        assert code == 0, err
        assert [int(s) for s in out.split()] == expected, name


def test_predict_refuses_raw_pixels_stored_as_floats(pixel_model, tmp_path, capsys):
    path, _ = pixel_model
    X, _ = pixels(seed=1)
    np.save(tmp_path / "raw.npy", X.astype(np.float32))
    code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "raw.npy"), "--device", "cpu")
    assert code == 1 and out == ""
    assert err.startswith(f"xpnet: error: {tmp_path / 'raw.npy'}: the inputs (after --scale none) range from ")
    assert "look like raw 0..255 pixels stored as floats: save them as integers (uint8)" in err
    assert "--scale tutorial" in err and len(err.splitlines()) == 1
    # the same values with --scale are what the model wants
    code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "raw.npy"), "--scale", "tutorial")
    assert code == 0, err


def test_predict_asks_for_a_scale_when_the_model_records_none(pixel_model, tmp_path, capsys):
    _, model = pixel_model
    model.metadata = {}
    path = tmp_path / "no-scale.npz"
    xpnet.save(model, path)
    X, _ = pixels(seed=1)
    np.save(tmp_path / "uint8.npy", X)
    code, _, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "uint8.npy"))
    assert code == 1
    assert "holds integers, but" in err and "does not record how its inputs were scaled: pass --scale" in err


def test_predict_on_mnist_digits_from_load_mnist(data_dir, tmp_path, capsys):
    """The report: load_mnist()'s float32 digits printed '5 5 5 5 5' (scaled by 1/255 twice)."""
    path = tmp_path / "mnist.npz"
    code, _, err = run_main(capsys, "train", "--data-dir", data_dir, "--limit", "5000", "--device", "cpu",
                            "--quiet", "--save", str(path))
    assert code == 0, err
    _, (X_test, y_test) = datasets.load_mnist(data_dir=data_dir)
    np.save(tmp_path / "digits.npy", X_test[:5])
    code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / "digits.npy"))
    assert code == 0, err
    assert [int(s) for s in out.split()] == y_test[:5].tolist() == [7, 2, 1, 0, 4]


def test_fit_warns_about_raw_integer_pixels():
    X, y = pixels()
    model = Sequential([Dense(16, 3)], device="cpu", seed=0)
    with pytest.warns(UserWarning, match=r"^fit: X holds integers up to 255 \(raw pixels\?\).*X / 255") as seen:
        model.fit(X, y, loss="softmax_cross_entropy", epochs=1, verbose=0)
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines add frames outside xpnet
        assert seen[0].filename == __file__  # points at the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(tutorial_scale(X), y, loss="softmax_cross_entropy", epochs=1, verbose=0)
        model.fit((X > 127).astype(np.int64), y, loss="softmax_cross_entropy", epochs=1, verbose=0)  # 0/1 ints


def test_predict_warns_outside_the_trained_range(dev):
    X, y = pixels()
    model = Sequential([Dense(16, 3)], device=dev, seed=0)
    model.fit(tutorial_scale(X).astype(np.float32), y, loss="softmax_cross_entropy", epochs=1, verbose=0)
    lo, hi = model.input_range
    assert lo == pytest.approx(0.01) and hi == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(np.linspace(0.0, 1.0, 32, dtype=np.float32).reshape(2, 16))  # within reach
    with pytest.warns(UserWarning, match=r"^predict: X holds values from 0 to 255, but the model was trained "
                                         r"on inputs from 0.01 to 1"):
        model.predict(X.astype(np.float32))


# -- 3. --save checked before training; the model is never lost ---------------------------------
def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained although --save cannot be written")
    monkeypatch.setattr(Sequential, "fit", fail)


def test_save_to_a_folder_fails_before_training(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    folder = tmp_path / "sdir"
    folder.mkdir()
    code, out, err = run_main(capsys, "train", "--dataset", "spirals", "--device", "cpu", "--save", str(folder))
    assert code == 1 and "training" not in out
    assert err.strip() == (f"xpnet: error: cannot save to {folder}: it is a folder; give a file name such as "
                           f"{folder / 'model.npz'}")
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_save_to_proc_fails_before_training_and_names_the_path(capsys, monkeypatch):
    _no_training(monkeypatch)
    code, _, err = run_main(capsys, "train", "--dataset", "spirals", "--device", "cpu", "--save", "/proc/m.npz")
    assert code == 1 and "cannot save to /proc/m.npz" in err and ".tmp" not in err
    assert "[Errno" not in err and "save into" in err  # the cause and the fix, not a bare strerror


def test_a_save_that_fails_after_training_rescues_the_model(tmp_path, capsys, monkeypatch):
    target = tmp_path / "m.npz"
    real_save = xpnet.saving.save

    def flaky(model, path, **kw):
        if os.fspath(path) == str(target):
            raise OSError(28, f"cannot save to {path}: No space left on device")
        return real_save(model, path, **kw)

    monkeypatch.setattr(xpnet.saving, "save", flaky)
    code, _, err = run_main(capsys, "train", "--dataset", "spirals", "--device", "cpu", "--epochs", "2",
                            "--save", str(target))
    assert code == 1
    assert f"cannot save to {target}: No space left on device; the trained model was saved to " in err
    rescued = err.split("the trained model was saved to ")[1].split(" instead")[0]
    try:
        model = xpnet.load(rescued)
        assert model.metadata["dataset"] == "spirals" and model.metadata["epochs"] == 2
    finally:
        os.unlink(rescued)


# -- 4. the loss is saved and used --------------------------------------------------------------
def test_loaded_model_evaluates_with_its_own_loss(tmp_path):
    X, y = pixels()
    Xs = tutorial_scale(X).astype(np.float32)
    model = Sequential([Dense(16, 3)], device="cpu", seed=0)
    model.fit(Xs, y, loss=SoftmaxCrossEntropy(), epochs=2, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz")
    assert isinstance(loaded.loss, SoftmaxCrossEntropy)
    assert loaded.evaluate(Xs, y) == model.evaluate(Xs, y, loss=SoftmaxCrossEntropy())


def test_evaluate_without_a_known_loss_asks_for_one():
    model = Sequential([Dense(16, 3)], device="cpu", seed=0)
    X, y = pixels()
    with pytest.raises(ValueError, match=r"^evaluate: no loss given, and this model has none recorded"):
        model.evaluate(tutorial_scale(X), y)


def test_cli_evaluate_uses_the_saved_loss_or_asks_for_one(tmp_path, capsys):
    (X, y), _ = datasets.load("spirals")
    model = Sequential([Dense(2, 16), ReLU(), Dense(16, 3)], device="cpu", seed=0)
    model.fit(X, y, loss=SoftmaxCrossEntropy(), epochs=3, verbose=0)
    model.save(tmp_path / "api.npz")  # saved from the API: no metadata at all
    code, out, err = run_main(capsys, "evaluate", str(tmp_path / "api.npz"), "--dataset", "spirals")
    assert code == 0, err
    assert "softmax_cross_entropy" in out
    model.loss = None
    model.save(tmp_path / "bare.npz")
    code, _, err = run_main(capsys, "evaluate", str(tmp_path / "bare.npz"), "--dataset", "spirals")
    assert code == 1 and "does not record the loss it was trained with: pass --loss" in err
    code, out, err = run_main(capsys, "evaluate", str(tmp_path / "bare.npz"), "--dataset", "spirals",
                              "--loss", "softmax_cross_entropy")
    assert code == 0 and "softmax_cross_entropy" in out, err


# -- 5. backends that are not installed; where a bad value came from ----------------------------
def test_torch_missing_is_device_unavailable_with_the_fix(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    for spec in ("cpu", "auto", None):
        with pytest.raises(xpnet.DeviceUnavailableError, match=r"PyTorch is not installed .*pip install"):
            xpnet.device(spec, backend="torch")
    code, _, err = run_main(capsys, "train", "--dataset", "spirals", "--backend", "torch")
    assert code == 1
    assert err.startswith("xpnet: error: backend 'torch' cannot be used: PyTorch is not installed")
    assert "--index-url https://download.pytorch.org/whl/cpu" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("flag, var, value", [("--backend", "XPNET_BACKEND", "mxnet"),
                                               ("--device", "XPNET_DEVICE", "tpu")])
def test_a_bad_flag_and_a_bad_variable_both_exit_2_naming_their_source(flag, var, value, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_flag:
        cli.main(["info", flag, value])
    from_flag = capsys.readouterr().err
    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exit_var:
        cli.main(["info"])
    from_var = capsys.readouterr().err
    assert exit_flag.value.code == exit_var.value.code == 2
    assert f"argument {flag}: " in from_flag and repr(value) in from_flag
    assert f"{value!r} (from ${var})" in from_var


def test_gpu_is_a_spelling_of_cuda():
    assert backend.parse_device("gpu") == ("cuda", 0)
    assert backend.parse_device("GPU:3") == ("cuda", 3)
    assert backend.parse_device("auto") is None
    with pytest.raises(ValueError, match=r"^bad device 'gpu:x' \(from --device\)"):
        backend.parse_device("gpu:x", "--device")
    if not backend.cuda_status()[0]:
        with pytest.raises(xpnet.DeviceUnavailableError, match=r"^cuda:1 was requested"):
            xpnet.device("gpu:1")


# -- 6. one clear line, never a traceback -------------------------------------------------------
def test_predict_on_a_scalar_npy_or_an_empty_csv_is_one_line(pixel_model, tmp_path, capsys):
    path, _ = pixel_model
    np.save(tmp_path / "scalar.npy", np.array(3.0))
    (tmp_path / "empty.csv").write_text("")
    np.save(tmp_path / "none.npy", np.zeros((0, 16), np.float32))
    expected = {"scalar.npy": "holds a single number (a 0-d array); save samples as rows",
                "empty.csv": "the file is empty; give one sample per line",
                "none.npy": "holds no samples (shape (0, 16))"}
    for name, message in expected.items():
        code, out, err = run_main(capsys, "predict", str(path), "--input", str(tmp_path / name), "--device", "cpu")
        assert code == 1 and out == ""
        assert err == f"xpnet: error: {tmp_path / name}: {message}" + err.split(message)[1]
        assert len(err.splitlines()) == 1


@pytest.mark.skipif(backend.cuda_status()[0] > 0, reason="a CUDA GPU is usable here")
@pytest.mark.parametrize("script", ["xor.py", "perceptron.py", "appended_bias.py"])
def test_examples_say_one_line_when_cuda_is_missing(script):
    env = {k: v for k, v in os.environ.items() if k not in ("XPNET_DEVICE", "XPNET_BACKEND", "XPNET_DEBUG")}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{script}: error: cuda:0 was requested but ") and "Fix:" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


# -- surprising: softmax twice, probabilities and classes ---------------------------------------
def test_softmax_in_front_of_softmax_cross_entropy_warns():
    X, y = pixels()
    model = Sequential([Dense(16, 3), Softmax()], device="cpu", seed=0)
    with pytest.warns(UserWarning, match=r"^fit: the model ends in Softmax\(\).*softmax is applied twice.*"
                                         r"Remove the final Softmax\(\).*loss='cross_entropy'"):
        model.fit(tutorial_scale(X), y, loss=SoftmaxCrossEntropy(), verbose=0)
    one = Sequential([Dense(16, 1), Sigmoid()], device="cpu", seed=0)
    with pytest.warns(UserWarning, match=r"^fit: the model ends in Sigmoid\(\) and BinaryCrossEntropy"):
        one.fit(tutorial_scale(X), (y > 0).astype(np.int64), loss=BinaryCrossEntropy(), verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(tutorial_scale(X), y, loss="cross_entropy", verbose=0)  # the fix the warning names


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_proba_and_predict_classes(dev):
    rng = np.random.default_rng(0)
    X = rng.random((40, 6)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    model = Sequential([Dense(6, 8), ReLU(), Dense(8, 4)], device=dev, seed=0, dtype="float64")
    model.fit(X, y, loss=SoftmaxCrossEntropy(), epochs=2, batch_size=8, verbose=0)
    logits = xpnet.to_numpy(model.predict(X))
    proba = xpnet.to_numpy(model.predict_proba(X))
    np.testing.assert_allclose(proba, _softmax(logits), rtol=1e-12)
    classes = xpnet.to_numpy(model.predict_classes(X))
    assert classes.dtype == np.int64 and classes.tolist() == logits.argmax(axis=1).tolist()

    one = Sequential([Dense(6, 1)], device=dev, seed=1, dtype="float64")
    one.fit(X, (y > 1).astype(np.int64), loss=BinaryCrossEntropy(), epochs=2, verbose=0)
    z = xpnet.to_numpy(one.predict(X))
    np.testing.assert_allclose(xpnet.to_numpy(one.predict_proba(X)), 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert 0 < (z > 0).sum() < len(z)  # both classes occur, so the threshold matters
    assert xpnet.to_numpy(one.predict_classes(X)).tolist() == (z[:, 0] > 0).astype(int).tolist()

    sig = Sequential([Dense(6, 1), Sigmoid()], device=dev, seed=1, dtype="float64")
    sig.fit(X, (y > 1).astype(np.float64).reshape(-1, 1), loss=MSE(), epochs=2, verbose=0)
    p = xpnet.to_numpy(sig.predict(X))
    np.testing.assert_array_equal(xpnet.to_numpy(sig.predict_proba(X)), p)
    assert xpnet.to_numpy(sig.predict_classes(X)).tolist() == (p[:, 0] > 0.5).astype(int).tolist()

    linear = Sequential([Dense(6, 4)], device=dev, seed=0)
    linear.fit(X, np.eye(4, dtype=np.float32)[y], loss=MSE(), verbose=0)
    with pytest.raises(ValueError, match=r"^predict_proba: the outputs of this model are not probabilities"):
        linear.predict_proba(X)


# -- found on the way ---------------------------------------------------------------------------
def test_load_state_dict_never_keeps_the_callers_arrays(dev):
    """Not the array itself (NumPy), nor its memory (torch.asarray and array-api-strict share NumPy's)."""
    X, y = pixels()
    model = Sequential([Dense(16, 3)], device=dev, seed=0)
    state = model.state_dict()
    before = {k: v.copy() for k, v in state.items()}
    model.load_state_dict(state)
    model.fit(tutorial_scale(X), y, loss="softmax_cross_entropy", epochs=2, verbose=0)
    for k in state:
        np.testing.assert_array_equal(state[k], before[k])


def test_weights_loaded_transposed_are_stored_row_major():
    """A state whose matrices are transposed views (the book's (out, in) weights as ``W.T``) is stored
    row-major, as drawn weights are, and moving the model keeps it so: on a column-major weight every
    in-place SGD update walks against the gradient's layout (per-sample fit ran 2x slower, issue 10)."""
    model = Sequential([Dense(6, 4), Sigmoid(), Dense(4, 3)], device="cpu", seed=0)
    state = {k: (v.T.copy().T if v.ndim == 2 else v) for k, v in model.state_dict().items()}
    assert not state["0.W"].flags.c_contiguous
    model.load_state_dict(state)
    for k, v in model.parameters().items():
        assert v.flags.c_contiguous, k
        np.testing.assert_array_equal(v, state[k])
    model.parameters()["0.W"] = np.asfortranarray(state["0.W"])
    model.to("cpu")
    assert model.parameters()["0.W"].flags.c_contiguous
    np.testing.assert_array_equal(model.parameters()["0.W"], state["0.W"])


# -- pinned details (each found by the mutation run) --------------------------------------------
def test_the_double_activation_warnings_word_for_word():
    X, y = pixels()
    softmax_net = Sequential([Dense(16, 3), Softmax()], device="cpu", seed=0)
    with pytest.warns(UserWarning) as seen:
        softmax_net.fit(tutorial_scale(X), y, loss=SoftmaxCrossEntropy(), verbose=0)
    assert [str(w.message) for w in seen] == [
        "fit: the model ends in Softmax() and SoftmaxCrossEntropy applies softmax itself (it takes logits), so "
        "softmax is applied twice and training crawls. Remove the final Softmax() (predict_proba gives "
        "probabilities), or use loss='cross_entropy', which takes probabilities."]
    sigmoid_net = Sequential([Dense(16, 1), Sigmoid()], device="cpu", seed=0)
    with pytest.warns(UserWarning) as seen:
        sigmoid_net.fit(tutorial_scale(X), (y > 0).astype(np.int64), loss=BinaryCrossEntropy(), verbose=0)
    assert [str(w.message) for w in seen] == [
        "fit: the model ends in Sigmoid() and BinaryCrossEntropy applies the sigmoid itself (it takes logits), so "
        "the sigmoid is applied twice. Remove the final Sigmoid() (predict_proba gives probabilities)."]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Sigmoid output with MSE, and a linear one with BCE, are right
        sigmoid_net.fit(tutorial_scale(X), (y > 0).astype(np.float32).reshape(-1, 1), loss=MSE(), verbose=0)
        Sequential([Dense(16, 1)], device="cpu", seed=0).fit(tutorial_scale(X), (y > 0).astype(np.int64),
                                                             loss=BinaryCrossEntropy(), verbose=0)
        Sequential([], device="cpu").fit(tutorial_scale(X), tutorial_scale(X), loss=MSE(), verbose=0)


def test_fit_records_the_union_of_the_ranges_it_has_seen():
    model = Sequential([Dense(2, 1)], device="cpu", seed=0)
    t = np.zeros((3, 1), np.float32)
    model.fit(np.array([[0.2, 0.5], [0.3, 0.4], [0.25, 0.45]], np.float32), t, loss=MSE(), verbose=0)
    assert model.input_range == pytest.approx((0.2, 0.5))
    model.fit(np.array([[0.1, 0.3], [0.3, 0.3], [0.3, 0.3]], np.float32), t, loss=MSE(), verbose=0)
    assert model.input_range == pytest.approx((0.1, 0.5))
    model.fit(np.array([[0.3, 0.9], [0.4, 0.4], [0.4, 0.4]], np.float32), t, loss=MSE(), verbose=0)
    assert model.input_range == pytest.approx((0.1, 0.9))


def test_the_range_fit_records_is_the_training_rows_not_the_held_out_ones():
    """With ``validation_split`` the last rows are held out: they are not what the model was trained on, so
    their values stay out of ``input_range`` (whose check for NaN spans the whole of X)."""
    model = Sequential([Dense(2, 1)], device="cpu", seed=0)
    X = np.array([[0.2, 0.5], [0.3, 0.4], [0.25, 0.45], [0.0, 3.0]], np.float32)
    model.fit(X, np.zeros((4, 1), np.float32), loss=MSE(), validation_split=0.25, verbose=0)
    assert model.input_range == pytest.approx((0.2, 0.5))


@pytest.mark.parametrize("call", ["predict", "predict_proba", "predict_classes", "evaluate"])
def test_each_entry_point_warns_in_its_own_name_outside_the_trained_range(call):
    X, y = pixels()
    model = Sequential([Dense(16, 3)], device="cpu", seed=0)
    model.fit(tutorial_scale(X), y, loss=SoftmaxCrossEntropy(), verbose=0)
    args = (X.astype(np.float32), y) if call == "evaluate" else (X.astype(np.float32),)
    with pytest.warns(UserWarning) as seen:
        getattr(model, call)(*args)
    assert [str(w.message).split(" holds")[0] for w in seen] == [f"{call}: X"]


def test_class_thresholds_at_exactly_the_cut():
    """A probability of exactly 0.5 (or a logit of exactly 0) is class 0, as in evaluate's accuracy."""
    X = np.zeros((3, 4), np.float32)
    for layers, loss, kind in [([Dense(4, 1, init="zeros"), Sigmoid()], MSE(), "probability"),
                               ([Dense(4, 1, init="zeros"), Sigmoid()], BinaryCrossEntropy(), "probability"),
                               ([Dense(4, 1, init="zeros")], BinaryCrossEntropy(), "logit")]:
        model = Sequential(layers, device="cpu", seed=0)
        model.loss = loss
        assert xpnet.to_numpy(model.predict_classes(X)).tolist() == [0, 0, 0], kind
        model.parameters()["0.b"][...] = 1e-6  # just above the cut
        assert xpnet.to_numpy(model.predict_classes(X)).tolist() == [1, 1, 1], kind
    # two outputs are an argmax, not a threshold
    two = Sequential([Dense(4, 2, init="zeros")], device="cpu", seed=0)
    two.parameters()["0.b"][...] = np.array([0.2, 0.9], np.float32)
    assert xpnet.to_numpy(two.predict_classes(X)).tolist() == [1, 1, 1]


def test_only_the_last_layer_counts_as_a_double_activation():
    X, y = pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for inner in (Softmax(), Sigmoid()):  # an activation inside the network is no mistake
            Sequential([Dense(16, 4), inner, Dense(4, 3)], device="cpu", seed=0).fit(
                tutorial_scale(X), y, loss=SoftmaxCrossEntropy(), verbose=0)
            Sequential([Dense(16, 4), inner, Dense(4, 1)], device="cpu", seed=0).fit(
                tutorial_scale(X), (y > 0).astype(np.int64), loss=BinaryCrossEntropy(), verbose=0)
