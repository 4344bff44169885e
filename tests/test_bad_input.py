"""Bad input meets a clear error: the right type, and a message that says what was wrong and where.

Each case is (what is called, the exception type, a fragment of its message). They run on NumPy and
array-api-strict (the edges must not depend on the backend).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet import (MSE, SGD, Adam, BinaryCrossEntropy, Dense, Flatten, Identity, LeakyReLU, ReLU, Sequential,
                   Sigmoid, SoftmaxCrossEntropy, TrainingDiverged, to_numpy)

BACKENDS = ["numpy", "array-api-strict"]


def net(backend="numpy", dtype="float32"):
    return Sequential([Dense(4, 5), ReLU(), Dense(5, 3)], device="cpu", backend=backend, seed=0, dtype=dtype)


X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
Y = np.arange(10) % 3


def fit(model, X=X, y=Y, **kw):
    kw.setdefault("loss", SoftmaxCrossEntropy())
    kw.setdefault("verbose", 0)
    return model.fit(X, y, **kw)


def _with(array, index, value):
    out = np.array(array, dtype=np.float32)
    out[index] = value
    return out


# id -> (callable taking the model, exception type, message fragment)
CASES = {
    # -- X -------------------------------------------------------------------------------------
    "X-wrong-feature-count": (lambda m: fit(m, X=np.ones((10, 5))), ValueError,
                              "X has shape (10, 5) but the first layer Dense(in_features=4"),
    "X-one-dimensional": (lambda m: fit(m, X=np.ones(4)), ValueError, "X.reshape(1, -1)"),
    "X-3d-without-Flatten": (lambda m: fit(m, X=np.ones((10, 2, 2))), ValueError, "add a Flatten() layer"),
    "X-empty": (lambda m: fit(m, X=np.ones((0, 4)), y=np.ones(0, dtype=int)), ValueError, "X is empty"),
    "X-NaN": (lambda m: fit(m, X=_with(X, (3, 1), np.nan)), ValueError, "X contains NaN or infinite"),
    "X-inf": (lambda m: fit(m, X=_with(X, (0, 0), -np.inf)), ValueError, "X contains NaN or infinite"),
    "X-object-dtype": (lambda m: fit(m, X=np.array([[object()] * 4] * 10)), TypeError, "not numbers"),
    "X-strings": (lambda m: fit(m, X=np.full((10, 4), "a")), TypeError, "has dtype <U1, not numbers"),
    "X-None": (lambda m: fit(m, X=None), ValueError, "X is None"),
    "X-dict": (lambda m: fit(m, X={"a": 1}), TypeError, "X must be an array or nested lists"),
    "X-scalar": (lambda m: fit(m, X=np.float32(3.0)), ValueError, "X is a scalar"),
    "X-ragged-lists": (lambda m: fit(m, X=[[1.0, 2.0], [3.0]]), TypeError, "X must be an array or nested lists"),
    # -- y -------------------------------------------------------------------------------------
    "y-length-mismatch": (lambda m: fit(m, y=Y[:7]), ValueError, "X has 10 samples but y has shape (7,)"),
    "y-label-too-large": (lambda m: fit(m, y=_int_with(Y, 2, 3)), ValueError, "labels must be in 0..2"),
    "y-label-negative": (lambda m: fit(m, y=_int_with(Y, 0, -1)), ValueError, "got labels from -1 to 2"),
    "y-float-labels-for-classes": (lambda m: fit(m, y=Y.astype(np.float32)), ValueError,
                                   "pass them as integers"),
    "y-float-column-for-3-outputs": (lambda m: fit(m, y=np.full(10, 0.5)), ValueError,
                                     "the model outputs 3 values per sample"),
    "y-2d-integers": (lambda m: fit(m, y=np.zeros((10, 3), dtype=int)), ValueError,
                      "integer labels must be 1-D"),
    "y-one-hot-wrong-width": (lambda m: fit(m, y=np.eye(4)[Y % 4]), ValueError, "expected (10, 3)"),
    "y-NaN": (lambda m: fit(m, y=_with(np.eye(3)[Y], (1, 1), np.nan), loss=MSE()), ValueError,
              "y contains NaN"),
    "y-3d": (lambda m: fit(m, y=np.zeros((10, 3, 1))), ValueError, "expected (10, 3)"),
    "y-strings": (lambda m: fit(m, y=np.array(["cat"] * 10)), TypeError, "y has dtype <U3"),
    "y-None-in-evaluate": (lambda m: m.evaluate(X, None, loss="mse"), ValueError, "y is None"),
    # -- fit arguments -------------------------------------------------------------------------
    "batch-size-zero": (lambda m: fit(m, batch_size=0), ValueError, "batch_size must be an int >= 1, got 0"),
    "batch-size-negative": (lambda m: fit(m, batch_size=-5), ValueError, "got -5"),
    "batch-size-float": (lambda m: fit(m, batch_size=2.5), ValueError, "got 2.5"),
    "batch-size-bool": (lambda m: fit(m, batch_size=True), ValueError, "got True"),
    "epochs-negative": (lambda m: fit(m, epochs=-1), ValueError, "epochs must be an int >= 0"),
    "validation-not-a-pair": (lambda m: fit(m, validation_data=X), TypeError, "validation_data must be a pair"),
    "validation-wrong-features": (lambda m: fit(m, validation_data=(np.ones((3, 7)), Y[:3])), ValueError,
                                  "validation_data: X has shape (3, 7)"),
    "predict-wrong-features": (lambda m: m.predict(np.ones((2, 3))), ValueError, "predict: X has shape (2, 3)"),
    "predict-batch-size-zero": (lambda m: m.predict(X, batch_size=0), ValueError, "batch_size must be"),
    "evaluate-label-out-of-range": (lambda m: m.evaluate(X, _int_with(Y, 0, 9), loss="softmax_cross_entropy"),
                                    ValueError, "evaluate: labels must be in 0..2"),
    "unknown-loss": (lambda m: fit(m, loss="hinge"), ValueError, "unknown loss 'hinge'"),
    "unknown-optimizer": (lambda m: fit(m, optimizer="lbfgs"), ValueError, "unknown optimizer 'lbfgs'"),
    # -- optimizers ----------------------------------------------------------------------------
    "lr-negative": (lambda m: SGD(-0.1), ValueError, "lr must be a positive finite number, got -0.1"),
    "lr-nan": (lambda m: SGD(math.nan), ValueError, "lr must be a positive finite number"),
    "lr-string": (lambda m: Adam("fast"), ValueError, "lr must be a positive finite number, got 'fast'"),
    "momentum-above-one": (lambda m: SGD(0.1, momentum=1.5), ValueError, "momentum must be in [0, 1)"),
    "nesterov-without-momentum": (lambda m: SGD(0.1, nesterov=True), ValueError, "nesterov=True needs a momentum"),
    "adam-beta-one": (lambda m: Adam(beta1=1.0), ValueError, "beta1 must be in [0, 1)"),
    # -- building models and layers ------------------------------------------------------------
    "sequential-non-layer": (lambda m: Sequential([Dense(2, 2), "relu"], device="cpu"), TypeError,
                             "layer 1 is 'relu', not an xpnet Layer"),
    "sequential-int-dtype": (lambda m: Sequential([Dense(2, 2)], device="cpu", dtype="int32"), ValueError,
                             "dtype must be 'float32' or 'float64'"),
    "dense-zero-width": (lambda m: Dense(0, 3), ValueError, "in_features must be a positive int, got 0"),
    "dense-float-width": (lambda m: Dense(3, 2.5), ValueError, "out_features must be a positive int, got 2.5"),
    "unknown-initializer": (lambda m: Dense(3, 2, init="orthogonal"), ValueError, "unknown initializer"),
    "leaky-relu-alpha": (lambda m: LeakyReLU(alpha=2.0), ValueError, "alpha must be in [0, 1)"),
    "dense-forward-wrong-shape": (lambda m: m.layers[0].forward(m.device.asarray(np.ones((2, 5)))), ValueError,
                                  "Dense(4, 5) expects input of shape (batch, ..., 4), got (2, 5)"),
    "load-state-dict-wrong-shape": (
        lambda m: m.load_state_dict({**m.state_dict(), "0.W": np.ones((3, 3))}), ValueError,
        "0.W has shape (3, 3), the model expects (4, 5)"),
    "load-state-dict-missing-key": (
        lambda m: m.load_state_dict({k: v for k, v in m.state_dict().items() if k != "2.b"}), ValueError,
        "missing keys ['2.b']"),
    # -- losses called directly ----------------------------------------------------------------
    "loss-batch-mismatch": (lambda m: MSE().forward(m.device.asarray(np.ones((4, 3))),
                                                    m.device.asarray(np.ones((5, 3)))), ValueError,
                            "MSE: 5 targets for 4 predictions"),
    "loss-1d-predictions": (lambda m: SoftmaxCrossEntropy().forward(m.device.asarray(np.ones(3)),
                                                                    m.device.asarray([0, 1, 2], "int64")),
                            ValueError, "predictions must be 2-D"),
    "loss-2d-int-labels": (lambda m: SoftmaxCrossEntropy().forward(m.device.asarray(np.ones((2, 3))),
                                                                   m.device.asarray(np.zeros((2, 3)), "int64")),
                           ValueError, "integer labels must be 1-D"),
    "bce-target-shape": (lambda m: BinaryCrossEntropy().forward(m.device.asarray(np.ones((2, 2))),
                                                                m.device.asarray(np.ones((2, 3)))),
                         ValueError, "targets of shape (2, 3) do not match predictions of shape (2, 2)"),
    # -- devices -------------------------------------------------------------------------------
    "device-bad-spec": (lambda m: xpnet.device("gpu:x"), ValueError, "use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    "device-backend-mismatch": (lambda m: xpnet.device("cuda", backend="numpy"), ValueError,
                                "backend 'numpy' cannot run on 'cuda'"),
    "model-on-unknown-backend": (lambda m: Sequential([Dense(2, 2)], device="cpu", backend="tensorflow"),
                                 ValueError, "unknown backend 'tensorflow'"),
}


def _int_with(labels, index, value):
    out = np.array(labels, dtype=np.int64)
    out[index] = value
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_by_xpnet_itself(case):
    """The error comes from xpnet's own check (the innermost frame is in the package), not from deep
    inside an array library, and it is not a library error re-raised with a new message."""
    import os
    import traceback

    call, kind, _ = CASES[case]
    with pytest.raises(kind) as info:
        call(net("array-api-strict"))
    innermost = traceback.extract_tb(info.value.__traceback__)[-1].filename
    package = os.path.dirname(os.path.abspath(xpnet.__file__))  # its subpackages (layers/) count as xpnet
    assert os.path.abspath(innermost).startswith(package + os.sep), f"{case}: raised in {innermost}"
    assert info.value.__cause__ is None, f"{case}: chained from {info.value.__cause__!r}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_clear_error(case, backend):
    call, kind, fragment = CASES[case]
    with pytest.raises(kind) as info:
        call(net(backend))
    assert fragment in str(info.value), f"{case}: message was {str(info.value)!r}"


# -- mixed devices: data from the host or another backend is moved to the model (documented) -----
@pytest.mark.parametrize("source", ["array-api-strict", "torch"])
def test_arrays_from_another_backend_are_moved_to_the_model(source):
    if source == "torch":
        pytest.importorskip("torch")
    other = xpnet.device("cpu", backend=source)
    model = net("numpy")
    history = fit(model, X=other.asarray(X), y=other.asarray(Y, "int64"), epochs=2)
    assert len(history["loss"]) == 2
    np.testing.assert_allclose(to_numpy(model.predict(other.asarray(X))), to_numpy(model.predict(X)))


def test_host_data_goes_into_a_strict_model_on_its_second_device():
    import array_api_strict

    device1 = array_api_strict.__array_namespace_info__().devices()[1]
    dev = xpnet.device_of(array_api_strict.asarray(0.0, device=device1))
    model = Sequential([Dense(4, 3)], device=dev, seed=0)
    fit(model, epochs=1)
    assert xpnet.device_of(model.predict(X)) == dev


class RecordDtype(Identity):
    """Remembers the dtype of every input it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, training=False):
        self.seen.append(x.dtype)
        return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model_dtype, data_dtype", [("float32", np.int32), ("float32", np.uint8),
                                                     ("float32", np.int64), ("float32", np.float64),
                                                     ("float64", np.float32), ("float64", np.int16)])
@pytest.mark.filterwarnings("ignore:fit. X holds integers:UserWarning")  # small integers on purpose
def test_input_is_cast_to_the_model_dtype(backend, model_dtype, data_dtype):
    """fit, evaluate and predict hand the first layer X in the model's dtype, whatever X's dtype; integer
    pixels give exactly what the same values as floats give."""
    pixels = (np.abs(X) * 10).astype(data_dtype)
    recorder = RecordDtype()
    model = Sequential([recorder, Dense(4, 5), ReLU(), Dense(5, 3)], device="cpu", backend=backend, seed=0,
                       dtype=model_dtype)
    twin = Sequential([Dense(4, 5), ReLU(), Dense(5, 3)], device="cpu", backend=backend, seed=0, dtype=model_dtype)
    want = model.device.dtype(model_dtype)
    history = fit(model, X=pixels, epochs=2, shuffle=False)
    out = model.predict(pixels)
    model.evaluate(pixels, Y)
    assert recorder.seen and all(d == want for d in recorder.seen), recorder.seen
    assert out.dtype == want and all(p.dtype == want for p in model.parameters().values())
    reference = fit(twin, X=pixels.astype(model_dtype), epochs=2, shuffle=False)
    assert history["loss"] == reference["loss"]
    np.testing.assert_array_equal(to_numpy(out), to_numpy(twin.predict(pixels.astype(model_dtype))))


# -- numeric faults ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_stops_training_and_restores_the_last_finite_weights(backend):
    """A loss that overflows in the first window of the first epoch: the model gets back exactly the
    weights it started with (the window case is in test_shuffle_and_divergence.py)."""
    model = Sequential([Dense(4, 8), Sigmoid(), Dense(8, 3)], device="cpu", backend=backend, seed=0)
    start = model.state_dict()
    big_X = np.random.default_rng(1).normal(scale=1e3, size=(200, 4)).astype(np.float32)
    targets = np.random.default_rng(2).normal(scale=1e3, size=(200, 3)).astype(np.float32)
    with pytest.raises(TrainingDiverged) as info:
        model.fit(big_X, targets, loss=MSE(), optimizer=SGD(1e3), epochs=5, batch_size=10, verbose=0)
    err = info.value
    assert "lower learning rate" in str(err) and f"step {err.step + 1}" in str(err)
    assert (err.epoch, err.restored_step) == (0, 0) and err.step > 0
    assert not math.isfinite(err.value)
    got = model.state_dict()
    for name in start:
        np.testing.assert_array_equal(got[name], start[name], err_msg=name)
    # and the model still works
    assert np.isfinite(to_numpy(model.predict(X))).all()


def test_divergence_names_the_exact_step():
    model = Sequential([Dense(1, 1, init="zeros")], device="cpu", seed=0)
    X1 = np.full((64, 1), 10.0, dtype=np.float32)
    with pytest.raises(TrainingDiverged) as info:
        model.fit(X1, np.ones((64, 1), dtype=np.float32), loss=MSE(), optimizer=SGD(1.0), epochs=1, batch_size=1,
                  shuffle=False, verbose=0)
    # The residual is multiplied by 1 - lr x^2 = -99 each step: the loss 1/2 99^(2k) overflows float32
    # (3.4e38) first at k = 10.
    assert info.value.step == 10 and info.value.epoch == 0


def test_float64_model_rejects_nan_too():
    with pytest.raises(ValueError, match="NaN"):
        fit(net(dtype="float64"), X=_with(X, (0, 0), np.nan))


def test_finite_targets_whose_sum_overflows_are_taken():
    """The NaN check sums the targets first (no boolean copy); a sum that overflows is checked in full."""
    model = Sequential([Dense(4, 1)], device="cpu", seed=0, dtype="float64")
    y = np.full((10, 1), 1e308)
    with np.errstate(over="ignore", invalid="ignore"):
        assert math.isinf(model.evaluate(X, y, loss="mse")["loss"])  # no ValueError about NaN
        y[3, 0] = np.inf
        with pytest.raises(ValueError, match="y contains NaN or infinite values"):
            model.evaluate(X, y, loss="mse")


@pytest.mark.parametrize("y, hint", [
    (np.arange(10, dtype=np.float32) % 3, "these look like class labels: pass them as integers, y.astype(np.int64)"),
    (np.arange(10, dtype=np.float32) % 3 + 0.5, "the model has 3 outputs"),
    (np.arange(10, dtype=np.float32) % 3 - 1, "the model has 3 outputs"),  # negative: not labels
])
def test_float_labels_of_one_column_get_a_hint_only_when_they_look_like_labels(y, hint):
    with pytest.raises(ValueError) as info:
        fit(net(), y=y)
    assert str(info.value) == (f"fit: y has shape (10,), floats of one column, but the model outputs 3 values per "
                               f"sample; {hint}")


@pytest.mark.parametrize("span, warns", [
    ((-0.125, 1.375), False),  # trained on 0.25..1: half the span (0.375) beyond either end is still fine
    ((0.25, 1.3125), False),
    ((-0.25, 1.0), True),
    ((0.25, 1.5), True),
])
def test_inputs_warn_only_beyond_half_the_trained_span(span, warns):
    import types
    import warnings

    from xpnet.validation import check_input_range

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_input_range(types.SimpleNamespace(input_range=(0.25, 1.0)), span, "predict")
        check_input_range(types.SimpleNamespace(), span, "predict")  # no range recorded: nothing to check
    assert [str(w.message).split(";")[0] for w in seen] == (
        [f"predict: X holds values from {span[0]:g} to {span[1]:g}, but the model was trained on inputs from "
         f"0.25 to 1"] if warns else [])


def test_labels_for_one_output_unit_must_be_0_or_1():
    model = Sequential([Dense(4, 1)], device="cpu", seed=0)
    with pytest.raises(ValueError) as info:
        fit(model, y=np.arange(10) % 3, loss=BinaryCrossEntropy())
    assert str(info.value) == "fit: labels must be in 0..1 for a model with 1 output(s), got labels from 0 to 2"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("outputs", [1, 2])
def test_bool_labels_train_as_0_1_integer_labels(backend, outputs):
    y = np.arange(10) % 2
    loss = BinaryCrossEntropy() if outputs == 1 else SoftmaxCrossEntropy()
    runs = []
    for labels in (y.astype(bool), y.astype(np.int64)):
        model = Sequential([Dense(4, outputs)], device="cpu", backend=backend, seed=0)
        history = fit(model, y=labels, loss=loss, epochs=2, batch_size=4, optimizer=SGD(0.1)).history
        runs.append({k: history[k] for k in ("loss", "accuracy")})
    assert runs[0] == runs[1]


def test_nested_lists_and_objects_with___array___are_taken_as_arrays():
    class Frame:  # a table library's object: it converts itself
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    expected = net().predict(X)
    np.testing.assert_array_equal(to_numpy(net().predict(X.tolist())), to_numpy(expected))
    np.testing.assert_array_equal(to_numpy(net().predict(Frame(X))), to_numpy(expected))
    with pytest.raises(TypeError) as info:
        net().predict(object())
    assert str(info.value).startswith("predict: X must be an array or nested lists of numbers, got object (")
    with pytest.raises(ValueError) as info:
        net().predict(None)
    assert str(info.value) == "predict: X is None"
    with pytest.raises(ValueError) as info:
        fit(net(), y=None)
    assert str(info.value) == "fit: y is None; pass the targets (labels or rows) for X"


def test_images_for_a_dense_first_layer_get_the_flatten_hint_only_without_flatten():
    with pytest.raises(ValueError) as info:
        fit(net(), X=X.reshape(10, 2, 2))
    assert str(info.value).endswith("expects (samples, 4); add a Flatten() layer first")
    flat = Sequential([Flatten(), Dense(6, 3)], device="cpu", seed=0)
    with pytest.raises(ValueError) as info:
        fit(flat, X=X.reshape(10, 2, 2))
    assert str(info.value).endswith("expects (samples, 6)")


class Pick(xpnet.Layer):
    """Two of five columns, and it tells no shapes: a Dense(2, ...) after it takes X of five columns."""

    def forward(self, x, training=False):
        return x[:, :2]


def test_x_is_checked_against_the_first_fixed_layer_only_through_layers_that_rearrange_it():
    """Activations and a Flatten pass a sample's values on as they are, so the Dense after them checks X; a layer
    that computes new ones (a convolution, one of your own) takes X first, and its forward says what it takes."""
    X5 = np.ones((3, 5), np.float32)
    assert tuple(Sequential([Pick(), Dense(2, 3)], device="cpu", seed=0).predict(X5).shape) == (3, 3)
    with pytest.raises(ValueError, match=r"^predict: X has shape \(3, 5\) but the first layer Dense\(in_features=2"):
        Sequential([ReLU(), Flatten(), Dense(2, 3)], device="cpu", seed=0).predict(X5)
    conv = Sequential([xpnet.Conv2D(1, 2, 3), Flatten(), Dense(70, 3)], device="cpu", seed=0)
    with pytest.raises(ValueError,
                       match=r"^Dense\(70, 3\) expects input of shape \(batch, \.\.\., 70\), got \(2, 72\)$"):
        conv.predict(np.ones((2, 1, 8, 8), np.float32))


def test_integers_above_1_are_raw_pixels_and_0_1_are_not():
    import warnings

    with pytest.warns(UserWarning, match="X holds integers up to 2"):
        fit(net(), X=np.arange(40).reshape(10, 4) % 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(net(), X=np.arange(40).reshape(10, 4) % 2)


def test_targets_are_checked_in_the_models_dtype():
    """1e39 is finite in float64 but overflows float32: a float32 model would train on inf."""
    model = Sequential([Dense(4, 1)], device="cpu", seed=0)
    with np.errstate(over="ignore"):
        with pytest.raises(ValueError, match="y contains NaN or infinite values"):
            model.evaluate(X, np.full((10, 1), 1e39), loss="mse")


@pytest.mark.parametrize("columns", [2, 3])
def test_soft_label_rows_report_accuracy(columns):
    rows = np.full((10, columns), 0.1 / (columns - 1), np.float32)
    rows[np.arange(10), np.arange(10) % columns] = 0.9
    model = Sequential([Dense(4, columns)], device="cpu", seed=0)
    assert "accuracy" in model.evaluate(X, rows, loss="softmax_cross_entropy")


def test_complex_data_and_objects_as_y_are_refused_naming_fit():
    import array_api_strict as xps

    with pytest.raises(TypeError) as info:
        fit(net("array-api-strict"), X=xps.asarray(X.astype(np.complex64)))
    assert str(info.value) == "fit: X has dtype array_api_strict.complex64; use float32 data"
    with pytest.raises(TypeError) as info:
        fit(net("array-api-strict"), X=xps.asarray(X), y=xps.asarray(Y.astype(np.complex64)))
    assert str(info.value) == "fit: y has dtype array_api_strict.complex64; use int64 labels or float targets"
    with pytest.raises(TypeError) as info:
        fit(net(), y=object())
    assert str(info.value).startswith("fit: y must be an array or nested lists of numbers, got object (")


def test_only_fits_own_x_is_checked_for_raw_pixels():
    """validation_data of the same integers says nothing more: fit's X already said it."""
    pixels = np.arange(40).reshape(10, 4) % 7
    with pytest.warns(UserWarning) as seen:
        fit(net(), X=pixels, validation_data=(pixels, Y))
    assert [str(w.message).split(";")[0] for w in seen if "raw pixels" in str(w.message)] == [
        "fit: X holds integers up to 6 (raw pixels?)"]


def test_positive_int_arguments_refuse_true():
    from xpnet.arguments import check_count

    assert check_count("n", 3) == 3 and check_count("n", 0, 0) == 0
    for bad, low in ((True, 1), (0, 1), (-1, 0), (2.0, 1)):
        with pytest.raises(ValueError) as info:
            check_count("n", bad, low)
        assert str(info.value) == f"n must be an int >= {low}, got {bad!r}"
