"""xpnet.sklearn: MLPClassifier / MLPRegressor as scikit-learn estimators.

The oracle is scikit-learn's own MLP: with ``shuffle=False`` both walk the same path (same initial
weights, batches, penalty, optimizer) in X's dtype, so trained weights and loss curves must agree to
float64 rounding for float64 input (1e-12; measured 6e-16) and to float32 precision for float32 input.
Then the estimator contract (``check_estimator``) and the tools users reach for.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is an optional extra: pip install 'xpnet[sklearn]'")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from xpnet.sklearn import MLPClassifier, MLPRegressor, expected_failed_checks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0)


def _weights(est):
    return est.coefs_ + est.intercepts_


def _assert_same_weights(ours, theirs, atol=2e-6):
    assert [w.shape for w in _weights(ours)] == [w.shape for w in _weights(theirs)]
    for a, b in zip(_weights(ours), _weights(theirs)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


# -- scikit-learn's MLP as the oracle -------------------------------------------------------------------
SAME_PATH = {
    "sgd": dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
    "sgd-nesterov": dict(solver="sgd", momentum=0.9, learning_rate_init=0.05),
    "sgd-invscaling": dict(solver="sgd", momentum=0.0, learning_rate="invscaling", learning_rate_init=0.5),
    "sgd-nesterov-invscaling": dict(solver="sgd", momentum=0.9, learning_rate="invscaling", learning_rate_init=0.5),
    # tol=0.5: no epoch improves enough, so the rate falls to a fifth every other epoch
    "sgd-momentum-adaptive": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False, learning_rate="adaptive",
                                  learning_rate_init=0.1, tol=0.5, n_iter_no_change=1, max_iter=8),
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "adam-alpha": dict(solver="adam", learning_rate_init=0.01, alpha=0.5, activation="tanh"),
    "sgd-logistic-alpha": dict(solver="sgd", momentum=0.0, learning_rate_init=0.1, alpha=0.5, activation="logistic"),
}


TOLERANCES = {"float64": (1e-12, 1e-12), "float32": (2e-6, 1e-6)}  # dtype -> (weights' atol, loss curve's rtol)


@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("classes", [10, 2], ids=["multiclass", "binary"])
@pytest.mark.parametrize("setting", list(SAME_PATH))
def test_classifier_walks_scikit_learns_path(setting, classes, dtype):
    """Same init (drawn from random_state in scikit-learn's order), penalty alpha W / n_b on the weights of
    each batch (150 rows in batches of 64: the last one has 22), SGD/Adam steps, loss curve with the penalty,
    all in X's dtype (a float32 model is 1e-7 off scikit-learn's float64 one)."""
    X, y = load_digits(return_X_y=True)
    X, y = (X[:150] / 16.0).astype(dtype), y[:150] % classes
    params = {**dict(hidden_layer_sizes=(20, 10), max_iter=5, shuffle=False, batch_size=64, random_state=0),
              **SAME_PATH[setting]}
    theirs = SkClassifier(**params).fit(X, y)
    ours = MLPClassifier(device="cpu", **params).fit(X, y)
    atol, rtol = TOLERANCES[dtype]
    _assert_same_weights(ours, theirs, atol=atol)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    assert (ours.n_iter_, ours.t_, ours.n_layers_, ours.n_outputs_) == \
        (theirs.n_iter_, theirs.t_, theirs.n_layers_, theirs.n_outputs_)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-5)


def test_warm_start_goes_on_from_the_last_fit_as_scikit_learn_does():
    X, y = load_digits(return_X_y=True)
    X, y = X[:150] / 16.0, y[:150]
    params = dict(hidden_layer_sizes=(20,), max_iter=3, shuffle=False, batch_size=64, random_state=0, warm_start=True)
    theirs, ours = SkClassifier(**params), MLPClassifier(device="cpu", **params)
    for _ in range(2):
        theirs.fit(X, y)
        ours.fit(X, y)
    counts = (ours.n_iter_, ours.t_, len(ours.loss_curve_))
    assert counts == (theirs.n_iter_, theirs.t_, len(theirs.loss_curve_)) == (3, 900, 6)  # n_iter_ counts this fit
    _assert_same_weights(ours, theirs)


def test_regressor_walks_scikit_learns_path_with_several_targets():
    """Three targets: scikit-learn's loss is mean((y - p)^2) / 2 over all entries, xpnet's MSE sums over the
    outputs, so loss_curve_ divides by the number of targets (the gradients are the same)."""
    X, y = make_regression(120, 6, n_targets=3, random_state=0)
    y = y / y.std()
    params = dict(hidden_layer_sizes=(16,), max_iter=5, shuffle=False, batch_size=50, random_state=0,
                  solver="sgd", momentum=0.0, learning_rate_init=0.01, alpha=0.1)
    theirs = SkRegressor(**params).fit(X, y)
    ours = MLPRegressor(device="cpu", **params).fit(X, y)
    _assert_same_weights(ours, theirs, atol=1e-12)  # float64 X: a float64 model
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-12, atol=1e-12)


def test_early_stopping_stops_as_scikit_learn_does_and_keeps_the_best_weights():
    """Same stratified validation split (drawn from random_state after the weights), same scores, the same
    iteration to stop at (before max_iter), and the best iteration's weights restored. Two classes: for
    more, scikit-learn does not stratify (its n_outputs_ is then the number of classes), xpnet does."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16.0, y[:400] % 2
    params = dict(hidden_layer_sizes=(16,), max_iter=200, shuffle=False, random_state=1, solver="sgd",
                  learning_rate_init=0.3, momentum=0.0, early_stopping=True, n_iter_no_change=3)
    theirs = SkClassifier(**params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MLPClassifier(device="cpu", **params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ < 200
    assert ours.validation_scores_ == pytest.approx(theirs.validation_scores_)
    assert ours.best_validation_score_ == max(ours.validation_scores_)
    assert ours.best_loss_ is None
    assert np.argmax(ours.validation_scores_) < ours.n_iter_ - 1  # so restoring the best weights shows
    _assert_same_weights(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, SkClassifier), (MLPRegressor, SkRegressor)])
@pytest.mark.parametrize("X_dtype, model_dtype", [("float64", "float64"), ("float32", "float32"),
                                                  ("int64", "float64"), ("int32", "float64")])
def test_the_model_takes_the_dtype_of_X_as_scikit_learns_does(ours, theirs, X_dtype, model_dtype):
    """float32 in, a float32 model; float64 or ints in, float64; the weights, coefs_ and outputs say so, as
    scikit-learn's MLP (its weights follow X). Outputs come in X's float dtype (float64 for ints)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:100].astype(X_dtype), y[:100] % 3  # pixel counts 0..16: ints as they come
    y = y if ours is MLPClassifier else y.astype(np.float64)
    params = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    sk, est = theirs(**params).fit(X, y), ours(device="cpu", **params).fit(X, y)
    assert est._model.dtype == model_dtype
    assert all(p.dtype == model_dtype for p in est._model.parameters().values())
    assert [w.dtype for w in _weights(est)] == [w.dtype for w in _weights(sk)] == [np.dtype(model_dtype)] * 4
    out = "predict_proba" if ours is MLPClassifier else "predict"
    assert getattr(est, out)(X).dtype == getattr(sk, out)(X).dtype == ("float32" if X_dtype == "float32" else "float64")


def test_a_device_without_float64_trains_in_float32():
    """array-api-strict's "no_float64" device stands in for one without float64 (Apple's MPS; JAX without
    its 64-bit mode): float64 X gives a float32 model there rather than an error, float64 outputs still."""
    import xpnet

    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    native = [d for d in strict.__array_namespace_info__().devices() if "no_float64" in repr(d)]
    if not native:
        pytest.skip("this array-api-strict has no float64-less device")
    dev = xpnet.device_of(strict.asarray(0.0, device=native[0]))
    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0, device=dev).fit(X[:100] / 16.0, y[:100])
    assert clf._model.dtype == "float32" and clf.coefs_[0].dtype == np.float32
    assert clf.predict_proba(X[:5] / 16.0).dtype == np.float64


@pytest.mark.parametrize("first, then", [("float64", "float32"), ("float32", "float64")])
def test_later_fits_keep_the_dtype_of_the_first(first, then):
    """warm_start and partial_fit go on with the weights of the first fit, in its dtype (scikit-learn's
    weights keep theirs too); X of another dtype is cast to it, and the outputs follow X."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:120] / 16.0, y[:120]
    warm = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0, warm_start=True, device="cpu")
    part = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, device="cpu")
    warm.fit(X.astype(first), y)
    part.partial_fit(X.astype(first), y, classes=np.arange(10))
    for est in (warm.fit(X.astype(then), y), part.partial_fit(X.astype(then), y)):
        assert est._model.dtype == first and est.coefs_[0].dtype == first
        assert est.predict_proba(X.astype(then)).dtype == then
    assert warm.n_iter_ == 2 and part.t_ == 240


def test_accuracy_is_close_to_scikit_learns_own(digits):
    X_train, X_test, y_train, y_test = digits
    ours = MLPClassifier(hidden_layer_sizes=(64,), max_iter=40, random_state=0, device="cpu").fit(X_train, y_train)
    theirs = SkClassifier(hidden_layer_sizes=(64,), max_iter=40, random_state=0).fit(X_train, y_train)
    a, b = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    assert a >= 0.9 and b >= 0.9 and abs(a - b) <= 0.03, (a, b)


def test_regressor_fits_a_simple_regression():
    X, y = make_regression(300, 5, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y / y.std(), random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=150, learning_rate_init=0.01, random_state=0,
                       device="cpu").fit(X_train, y_train)
    assert reg.score(X_test, y_test) > 0.95
    assert reg.predict(X_test).shape == (len(X_test),)


# -- the estimator contract -------------------------------------------------------------------------------
@parametrize_with_checks([MLPClassifier(device="cpu"), MLPRegressor(device="cpu"),
                          MLPClassifier(device="cpu", backend="array-api-strict", max_iter=50),
                          MLPRegressor(device="cpu", backend="array-api-strict", max_iter=50)],
                         expected_failed_checks=expected_failed_checks)
def test_check_estimator(estimator, check):
    check(estimator)


def test_pipeline_with_a_scaler(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0,
                                                         device="cpu"))
    assert pipe.fit(X_train * 16, y_train).score(X_test * 16, y_test) >= 0.9


def test_grid_search_over_alpha_and_hidden_sizes(digits):
    X_train, _, y_train, _ = digits
    grid = GridSearchCV(MLPClassifier(max_iter=10, learning_rate_init=0.01, random_state=0, device="cpu"),
                        {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(8,), (32,)]}, cv=2)
    grid.fit(X_train[:400], y_train[:400])
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_ in grid.cv_results_["params"]
    assert grid.best_estimator_.get_params()["hidden_layer_sizes"] == grid.best_params_["hidden_layer_sizes"]
    assert grid.best_score_ > 0.7


def test_cross_val_score(digits):
    X_train, _, y_train, _ = digits
    scores = cross_val_score(MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, learning_rate_init=0.01,
                                           random_state=0, device="cpu"),
                             X_train, y_train, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


def test_clone_keeps_the_parameters_and_drops_the_fit(digits):
    X_train, _, y_train, _ = digits
    est = MLPClassifier(hidden_layer_sizes=(7, 5), alpha=0.3, max_iter=2, device="cpu", backend="numpy").fit(
        X_train, y_train)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "coefs_") and not hasattr(twin, "classes_")
    assert [w.shape for w in est.coefs_] == [(64, 7), (7, 5), (5, 10)]


def test_partial_fit(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0, device="cpu")
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X_train[:50], y_train[:50])
    half = len(X_train) // 2
    clf.partial_fit(X_train[:half], y_train[:half], classes=np.arange(10))
    assert (clf.n_iter_, clf.t_) == (1, half)
    for _ in range(15):
        clf.partial_fit(X_train[half:], y_train[half:])
        clf.partial_fit(X_train[:half], y_train[:half])
    assert clf.t_ == half + 15 * len(X_train)
    assert clf.score(X_test, y_test) >= 0.9
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X_train[:5], np.full(5, 11))


def test_partial_fit_after_pickling_goes_on_exactly(digits):
    """The optimizer's state (Adam's moments) travels with the pickle: training resumes identically."""
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0, device="cpu").fit(X_train, y_train)
    copy = pickle.loads(pickle.dumps(clf))
    assert copy._model.dtype == clf._model.dtype == "float64"  # X's
    assert copy._model.input_range == clf._model.input_range and clf._model.input_range is not None
    clf.partial_fit(X_train, y_train)
    copy.partial_fit(X_train, y_train)
    _assert_same_weights(copy, clf, atol=0)


def test_predict_proba(digits):
    X_train, X_test, y_train, y_test = digits
    for k in (10, 2):
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0, device="cpu")
        proba = clf.fit(X_train, y_train % k).predict_proba(X_test)
        assert isinstance(proba, np.ndarray) and proba.shape == (len(X_test), k)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        assert (clf.classes_[proba.argmax(axis=1)] == clf.predict(X_test)).all()
        np.testing.assert_allclose(clf.predict_log_proba(X_test), np.log(proba), rtol=1e-6)


def test_string_labels_come_back_as_given(digits):
    X_train, X_test, y_train, _ = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0, device="cpu")
    pred = clf.fit(X_train, names[y_train]).predict(X_test)
    assert set(pred) <= set(names) and list(clf.classes_) == sorted(names)


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
def test_other_backends_train_the_same_network(backend, digits):
    """NumPy in, NumPy out, whatever trains it; same seed, so the same weights up to float32 rounding.
    (Not JAX: it compiles every new shape, 9 s here; its path through Sequential is tested elsewhere.)"""
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    X_train, X_test, y_train, _ = digits
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, device="cpu")
    ref = MLPClassifier(**params).fit(X_train, y_train)
    est = MLPClassifier(backend=backend, **params).fit(X_train, y_train)
    assert est._model.device.backend == backend.replace("_", "-")
    for out in (est.predict(X_test), est.predict_proba(X_test), *est.coefs_):
        assert isinstance(out, np.ndarray)
    _assert_same_weights(est, ref, atol=1e-4)


def test_device_object_on_array_api_strict_second_device(digits):
    import xpnet

    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    dev = xpnet.device_of(strict.asarray(0.0, device=strict.__array_namespace_info__().devices()[1]))
    X_train, X_test, y_train, _ = digits
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0, device=dev).fit(X_train, y_train * 0.1)
    assert reg._model.device == dev and reg.predict(X_test).shape == (len(X_test),)


@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, SkClassifier), (MLPRegressor, SkRegressor)])
def test_the_parameters_are_scikit_learns_plus_device_and_backend(ours, theirs):
    """Same names and defaults; max_fun (L-BFGS only) is left out, as L-BFGS is."""
    expected = {k: v for k, v in theirs().get_params().items() if k != "max_fun"}
    assert ours().get_params() == {**expected, "device": None, "backend": None}


# -- refusals that say what to do ----------------------------------------------------------------------------
def test_lbfgs_poisson_and_multilabel_are_refused_clearly(digits):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match="poisson.*squared_error"):
        MLPRegressor(loss="poisson", device="cpu").fit(X_train, y_train)
    with pytest.raises(ValueError, match="lbfgs.*adam"):
        MLPClassifier(solver="lbfgs").fit(X_train, y_train)
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(device="cpu").fit(X_train, np.stack([y_train % 2, y_train % 3 == 0], axis=1))
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True, device="cpu").partial_fit(X_train, y_train, classes=np.arange(10))


def test_importing_xpnet_does_not_import_scikit_learn():
    done = subprocess.run([sys.executable, "-c", "import sys, xpnet; print('sklearn' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]
