"""fit's checks against silent wrong answers (issue 23): each case trained without an error and gave
chance accuracy, or worse; now fit refuses it before training, stops at the proof, or warns with the fix.

- cross-entropy on what are not probabilities (the names, the last layer, a negative loss);
- raw 0..255 pixels as floats (and no such advice for tabular data or from the scikit-learn estimators);
- a loss that diverges but stays finite;
- fit without a loss;
- EarlyStopping watching val_loss without validation data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpnet
from xpnet import (SGD, Dense, EarlyStopping, Identity, ModelCheckpoint, ReLU, Sequential, Sigmoid, Softmax,
                   UnscaledInputWarning, losses, saving, to_numpy)


def _data(n=60, features=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), rng.integers(0, classes, n)


def _weights(model):
    return {k: to_numpy(v).copy() for k, v in model.parameters().items()}


def _assert_unchanged(model, before):
    for k, v in _weights(model).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


class Logits(Identity):
    """A user's own last layer: fit cannot know what it gives, so only a negative loss can prove it."""


# -- 1. cross-entropy: one meaning per name, probabilities checked --------------------------------
def test_every_loss_name_and_class_name_that_files_hold_still_resolves():
    """Saved files name the loss by class (the header) or by its LOSSES key (the CLI's metadata)."""
    for key, cls in losses.LOSSES.items():
        assert type(losses.get(key)) is cls
        assert saving.LOSSES[cls.__name__] is cls


def test_cross_entropy_on_logits_is_refused_before_training(dev):
    X, y = _data()
    model = Sequential([Dense(5, 8), ReLU(), Dense(8, 3)], device=dev, seed=0)
    before = _weights(model)
    with pytest.raises(ValueError, match=r"^fit: loss='cross_entropy' takes probabilities, but the model ends in "
                                         r"Dense\(.*End the model in Softmax\(\), or use "
                                         r"loss='softmax_cross_entropy', which takes these outputs as logits"):
        model.fit(X, y, loss="cross_entropy", verbose=0)
    _assert_unchanged(model, before)
    assert model.loss is None


def test_cross_entropy_after_sigmoid_is_refused_with_both_fixes():
    """Measured: -t log p after Sigmoid drives every output to 1 (loss 0.0, accuracy 0.22 on 3 spirals)."""
    X, y = _data()
    for width, labels in ((3, y), (1, y % 2)):
        model = Sequential([Dense(5, width), Sigmoid()], device="cpu", seed=0)
        with pytest.raises(ValueError, match=r"^fit: loss='cross_entropy' after Sigmoid\(\) pulls only the true "
                                             r"class's output up.*loss='binary_cross_entropy'.*end the model in "
                                             r"Softmax\(\) instead"):
            model.fit(X, labels, loss=losses.CrossEntropy(), verbose=0)


def test_cross_entropy_after_softmax_trains_without_a_word(dev):
    X, y = _data()
    model = Sequential([Dense(5, 8), ReLU(), Dense(8, 3), Softmax()], device=dev, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(X, y, loss="categorical_crossentropy", optimizer=SGD(0.5), epochs=5, batch_size=10,
                            check_every=1, verbose=0)
    assert min(history["loss"]) > 0 and history["loss"][-1] < history["loss"][0]


def test_a_negative_cross_entropy_from_a_users_last_layer_stops_fit(dev):
    """The issue's run: the loss went 0.004, -1.75, -2.42 and accuracy stayed at 0.10."""
    X, y = _data()
    model = Sequential([Dense(5, 3), Logits()], device=dev, seed=0)
    epochs = []
    with pytest.raises(ValueError, match=r"^fit: loss='cross_entropy' went negative \(-[0-9.]+, epoch 1, step "
                                         r"\d+\): the model's outputs are not probabilities in 0\.\.1, or the "
                                         r"targets are negative\. End the model in Softmax\(\)"):
        model.fit(X, y, loss="cross_entropy", optimizer=SGD(0.5), epochs=20, batch_size=10, check_every=1,
                  verbose=0, callbacks=[lambda epoch, logs: epochs.append(epoch)])
    assert epochs == []  # stopped in the first epoch: the first negative window is the proof


def test_negative_targets_make_cross_entropy_negative_and_stop_fit():
    X, y = _data()
    targets = np.eye(3, dtype=np.float32)[y] * 2.0 - 1.0  # -1 / +1 rows, not probabilities
    model = Sequential([Dense(5, 3), Softmax()], device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"went negative .*or the targets are negative"):
        model.fit(X, targets, loss="cross_entropy", epochs=1, batch_size=10, verbose=0)


# -- 2. raw pixels as floats ----------------------------------------------------------------------
def _pixels(n=64, features=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, features)).astype(np.float32)


def test_whole_number_floats_up_to_255_warn_like_raw_integer_pixels(dev):
    X, y = _pixels(), np.arange(64) % 3
    model = Sequential([Dense(16, 3)], device=dev, seed=0)
    with pytest.warns(UnscaledInputWarning) as seen:
        model.fit(X, y, loss="softmax_cross_entropy", verbose=0)
    assert [str(w.message) for w in seen] == [
        "fit: X holds floats from 0 to 255, whole numbers (raw 0..255 pixels as floats?); the network sees them "
        "unscaled, so sigmoid and softmax units saturate and training stalls. Scale them first: X / 255 (or "
        "X / 255 * 0.99 + 0.01, the tutorial's scaling). If the values are meant as they are: "
        "warnings.filterwarnings('ignore', category=xpnet.UnscaledInputWarning)."]
    assert seen[0].filename == __file__  # points at the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=UnscaledInputWarning)  # the fix the message names
        model.fit(X, y, loss="softmax_cross_entropy", verbose=0)


def _tabular():
    rng = np.random.default_rng(1)
    digits = rng.integers(0, 17, (64, 16)).astype(np.float64)  # scikit-learn's load_digits: 0..16
    return {
        "digits 0..16": digits,
        "standardized": (digits - digits.mean(0)) / (digits.std(0) + 1e-9),
        "house prices": rng.uniform(5e4, 9e5, (64, 16)),
        "fractions up to 255": rng.uniform(0, 255, (64, 16)),
        "whole numbers up to 300": rng.integers(0, 301, (64, 16)).astype(np.float32),
        "scaled pixels": _pixels() / 255,
    }


@pytest.mark.parametrize("name", list(_tabular()))
def test_tabular_floats_get_no_pixel_warning(name):
    X = _tabular()[name]
    model = Sequential([Dense(16, 1)], device="cpu", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, np.zeros((64, 1), np.float32), loss="mse", optimizer=SGD(1e-12), verbose=0)


def test_a_few_fractions_among_whole_pixels_still_warn():
    X = _pixels()
    X[:4, :] = np.minimum(X[:4, :] + 0.5, 254.5)  # 6 % of the values: interpolated rows of 8-bit images
    with pytest.warns(UnscaledInputWarning, match="raw 0..255 pixels as floats"):
        Sequential([Dense(16, 3)], device="cpu", seed=0).fit(X, np.arange(64) % 3, loss="softmax_cross_entropy",
                                                             verbose=0)


def test_predict_gives_pixel_advice_only_for_pixel_ranges():
    X, y = _data(features=16)
    model = Sequential([Dense(16, 3)], device="cpu", seed=0)
    model.fit(X, y, loss="softmax_cross_entropy", verbose=0)  # trained on 0..1
    with pytest.warns(UserWarning, match=r"Scale X as the training data was \(raw 0\.\.255 pixels: X / 255"):
        model.predict(_pixels())
    with pytest.warns(UserWarning, match=r"Scale X as the training data was \(the same transform, with the "
                                         r"statistics of the training data\)\.$"):
        model.predict(X * 40.0 - 20.0)  # -20..20: a scaler's output, not pixels


def test_the_scikit_learn_estimators_give_no_pixel_advice():
    """The issue: GridSearchCV over StandardScaler + MLPClassifier on load_digits printed MNIST advice."""
    pytest.importorskip("sklearn", reason="scikit-learn is an optional extra (pip install 'xpnet[sklearn]')")
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from xpnet.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=3,
                                                                            random_state=0, device="cpu")),
                              {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
        search.fit(X, y)
        # raw 8-bit pixels as floats: right for Sequential.fit, not for an estimator of any table
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, device="cpu").fit(_pixels(), np.arange(64) % 3)
    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "255" in m or "pixels" in m], messages


# -- 6. a loss that diverges and stays finite -----------------------------------------------------
def _line(n=200):
    X = np.random.default_rng(0).standard_normal((n, 1)).astype(np.float32)
    return X, 2.0 * X


def test_a_finite_divergence_warns_once_with_the_learning_rate(dev):
    """SGD 2.5 on y = 2x: the error grows 1.5x a step, 1e16 after three epochs, never inf."""
    X, y = _line()
    model = Sequential([Dense(1, 1)], device=dev, seed=0)
    with pytest.warns(UserWarning) as seen:
        history = model.fit(X, y, loss="mse", optimizer=SGD(2.5), epochs=3, batch_size=10, check_every=10,
                            verbose=0)
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] > 1e12
    assert len(seen) == 1
    assert str(seen[0].message) == (
        "fit: the loss is diverging though finite: the last 16 steps were all at least 100x the first window's "
        "mean loss (18.15), up to 2.247e+07 (epoch 2, step 10); such a run does not recover and ends no better "
        "than a guess. Lower the learning rate (SGD lr=2.5 now: try lr=0.25), or clip the gradients: "
        "SGD(..., clip_norm=1.0).")


def test_a_converging_run_and_a_short_spike_do_not_warn():
    X, y = _line()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Sequential([Dense(1, 1)], device="cpu", seed=0).fit(X, y, loss="mse", optimizer=SGD(0.1), epochs=3,
                                                            batch_size=10, check_every=10, verbose=0)
    watch = xpnet.callbacks.LossWatch()
    watch.model = Sequential([Dense(1, 1)], device="cpu", seed=0)
    watch.model.loss, watch.optimizer = losses.MSE(), SGD(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for window in ([1.0, 1.0], [1.0, 500.0], [500.0, 1.0], [1.0, 500.0]):  # high runs of 1, never 2
            watch.on_batch_end(1, {"losses": np.array(window)})
    with pytest.warns(UserWarning, match=r"the last 3 steps were all at least 100x"):
        watch.on_batch_end(1, {"losses": np.array([500.0, 500.0])})  # 1 + 2 high steps in a row
    quiet = xpnet.callbacks.LossWatch(say=False)  # a distributed fit's other ranks: rank 0 alone warns
    quiet.model, quiet.optimizer = watch.model, watch.optimizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for window in ([1.0, 1.0], [500.0, 500.0], [500.0, 500.0]):
            quiet.on_batch_end(1, {"losses": np.array(window)})
    assert quiet.warned


def test_the_divergence_warning_leaves_out_clipping_when_the_optimizer_clips():
    X, y = _line()
    with pytest.warns(UserWarning, match=r"try lr=0\.25\)\.$"):
        Sequential([Dense(1, 1)], device="cpu", seed=0).fit(X, y, loss="mse", optimizer=SGD(2.5, clip_norm=1e9),
                                                            epochs=3, batch_size=10, check_every=10, verbose=0)


# -- 7. fit without a loss ------------------------------------------------------------------------
@pytest.mark.parametrize("layers, fits", [
    ([Dense(5, 3)], r"pass loss='softmax_cross_entropy' for class labels \(it takes the outputs as logits\), "
                    r"or loss='mse' for regression\."),
    ([Dense(5, 1)], r"pass loss='binary_cross_entropy' for 0/1 labels"),
    ([Dense(5, 3), Softmax()], r"pass loss='cross_entropy' \(the model ends in Softmax\(\)"),
    ([Dense(5, 3), Sigmoid()], r"pass loss='mse' \(the model ends in Sigmoid\(\), as the tutorial's\)"),
])
def test_fit_without_a_loss_is_refused_with_the_one_that_fits(layers, fits):
    X, y = _data()
    model = Sequential(layers, device="cpu", seed=0)
    before = _weights(model)
    with pytest.raises(ValueError, match=rf"^fit: no loss given; {fits}.* The choices: mse, softmax_cross_entropy, "
                                         rf"cross_entropy, binary_cross_entropy, or a Loss instance\.$"):
        model.fit(X, y, verbose=0)
    _assert_unchanged(model, before)
    assert model.loss is None


def test_a_resumed_fit_takes_the_checkpoints_loss(tmp_path):
    X, y = _data()
    model = Sequential([Dense(5, 3)], device="cpu", seed=0)
    model.fit(X, y, loss="softmax_cross_entropy", epochs=1, verbose=0, checkpoint_dir=tmp_path)
    again = Sequential([Dense(5, 3)], device="cpu", seed=0)
    again.fit(X, y, epochs=2, verbose=0, resume_from=tmp_path / "last.npz")
    assert isinstance(again.loss, losses.SoftmaxCrossEntropy)


# -- EarlyStopping on val_loss without validation data --------------------------------------------
def test_watching_a_val_figure_without_validation_data_is_refused_before_training(tmp_path):
    X, y = _data()
    model = Sequential([Dense(5, 3)], device="cpu", seed=0)
    before = _weights(model)
    for cb in (EarlyStopping(patience=2), ModelCheckpoint(tmp_path / "best.npz", save_best_only=True)):
        name = type(cb).__name__
        with pytest.raises(ValueError, match=rf"^fit: {name} monitors 'val_loss', a figure on held-out data, but "
                                             rf"fit was given neither validation_data nor validation_split\. Pass "
                                             rf"validation_data=\(X_val, y_val\) or validation_split=0\.2, or watch "
                                             rf"the training loss: {name}\(monitor='loss', \.\.\.\)\.$"):
            model.fit(X, y, loss="softmax_cross_entropy", epochs=3, verbose=0, callbacks=[cb])
        _assert_unchanged(model, before)
    # what is fine: held-out rows, the training loss, a ModelCheckpoint that saves every epoch
    for cb, kw in ((EarlyStopping(), {"validation_split": 0.2}), (EarlyStopping(monitor="loss"), {}),
                   (ModelCheckpoint(tmp_path / "every.npz"), {})):
        model.fit(X, y, loss="softmax_cross_entropy", epochs=1, verbose=0, callbacks=[cb], **kw)


def test_watching_a_val_figure_is_refused_before_a_checkpoint_is_loaded(tmp_path):
    X, y = _data()
    model = Sequential([Dense(5, 3)], device="cpu", seed=0)
    model.fit(X, y, loss="softmax_cross_entropy", epochs=1, verbose=0, checkpoint_dir=tmp_path)
    fresh = Sequential([Dense(5, 3)], device="cpu", seed=1)
    before = _weights(fresh)
    with pytest.raises(ValueError, match=r"^fit: EarlyStopping monitors 'val_loss'"):
        fresh.fit(X, y, epochs=3, verbose=0, resume_from=tmp_path / "last.npz", callbacks=[EarlyStopping()])
    _assert_unchanged(fresh, before)
