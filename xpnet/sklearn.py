"""``MLPClassifier`` and ``MLPRegressor``: drop-in for scikit-learn's, trained by xpnet on any device.

The parameters, their defaults and the fitted attributes are scikit-learn's (1.6+), so these work in
``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` and pass ``check_estimator``; ``device`` and
``backend`` pick where xpnet trains (what :func:`xpnet.device` takes; pass strings, so that ``clone``
can copy them). The model is a :class:`~xpnet.Sequential` of ``Dense`` layers in float32. What follows
scikit-learn exactly and where it differs:

- Initial weights: Glorot-uniform weights *and* biases, drawn from ``random_state`` in scikit-learn's
  order, so a given ``random_state`` starts from scikit-learn's own weights (rounded to float32).
- Objective per batch of ``n_b`` rows: ``L + alpha / (2 n_b) * sum ||W||^2`` over the weights, not the
  biases (the gradient gets ``alpha W / n_b``). ``L`` is the softmax cross-entropy (multiclass), the
  logistic cross-entropy on one output (binary) or ``mean((y - p)^2) / 2`` (regression).
  ``loss_curve_`` holds the epoch mean of that objective, as scikit-learn's does.
- Stopping: scikit-learn's rule, on the training loss, or with ``early_stopping`` on the held-out
  score (accuracy or R^2); the best weights come back at the end. The held-out split is stratified
  for every classifier (scikit-learn, though documented so, stratifies two classes only).
- Shuffling draws from a generator seeded by ``random_state``, not from ``random_state`` itself, so the
  batches (and so the trained weights) differ from scikit-learn's.
- ``solver="adam"`` is :class:`xpnet.Adam` with scikit-learn's ``epsilon`` (added to the raw ``sqrt(v)``);
  ``solver="sgd"`` is :class:`xpnet.SGD`, whose momentum buffer is PyTorch's: it differs from
  scikit-learn's only while an ``invscaling`` or ``adaptive`` rate changes. With ``shuffle=False`` the
  trained weights are scikit-learn's to float32 precision (tests/test_sklearn.py).
- Not supported, with an error that says so: ``solver="lbfgs"``, multilabel targets, sparse input,
  ``sample_weight``.

Importing this module imports scikit-learn (the ``sklearn`` extra); ``import xpnet`` does not.
"""

from __future__ import annotations

import copy
import math
import warnings

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import backend as _backend
from ._inplace import add_
from .layers import Dense, Identity, ReLU, Sigmoid, Tanh, sigmoid, softmax
from .losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from .model import Sequential
from .optim import SGD, Adam, Optimizer

__all__ = ["MLPClassifier", "MLPRegressor", "expected_failed_checks"]

_ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}


def expected_failed_checks(estimator) -> dict:
    """The ``check_estimator`` checks these estimators are known to fail, with the reason, for
    ``check_estimator(est, expected_failed_checks=...)`` or ``parametrize_with_checks`` (scikit-learn 1.6
    moved this out of the estimator's tags)."""
    return {"check_methods_subset_invariance":
            "the model computes in float32: BLAS may round a row's product differently in a smaller batch "
            "(measured 4e-7 relative on predict_proba; the check allows 1e-7)"}


class _ScikitLearnStep(Optimizer):
    """``inner``'s step (SGD or Adam) made scikit-learn's: on the gradient of
    ``L + alpha / (2 n_b) sum ||W||^2`` (weights only), and for Adam with scikit-learn's epsilon.

    ``n_b`` is the size of the current batch: ``fit`` takes them in order, ``batch_size`` each and the
    remainder last. ``penalty`` sums ``||W||^2`` over the epoch's steps on the device, read back once
    per epoch for ``loss_curve_``.
    """

    def __init__(self, inner: Optimizer, alpha: float, epsilon: float = 1e-8):
        self.inner, self.alpha, self.epsilon = inner, float(alpha), float(epsilon)
        self.penalty, self.sizes, self.steps = 0.0, [1], 0

    lr = property(lambda self: self.inner.lr, lambda self, value: setattr(self.inner, "lr", value))

    def start_epoch(self, n: int, batch_size: int) -> None:
        self.sizes = [min(batch_size, n - lo) for lo in range(0, n, batch_size)]
        self.steps, self.penalty = 0, 0.0

    def step(self, params, grads):
        if self.alpha:
            scale = self.alpha / self.sizes[self.steps % len(self.sizes)]
            xp = None
            for name in grads:
                if name.endswith(".W"):
                    w = params[name]
                    xp = xp or _backend.device_of(w).xp
                    self.penalty = self.penalty + xp.sum(w * w)
                    grads[name] = add_(grads[name], scale * w)
        self.steps += 1
        if isinstance(self.inner, Adam):
            # scikit-learn adds epsilon to the raw sqrt(v), xpnet's Adam eps * sqrt(1 - beta2^t) (PyTorch's
            # form); this eps makes them the same step. It matters where gradients vanish (a constant input).
            self.inner.eps = self.epsilon / math.sqrt(1.0 - self.inner.beta2 ** (self.inner.t + 1))
        self.inner.step(params, grads)


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the model, the iteration loop."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, device=None, backend=None):
        self.hidden_layer_sizes, self.activation, self.solver, self.alpha = hidden_layer_sizes, activation, solver, alpha
        self.batch_size, self.learning_rate, self.learning_rate_init = batch_size, learning_rate, learning_rate_init
        self.power_t, self.max_iter, self.shuffle, self.random_state = power_t, max_iter, shuffle, random_state
        self.tol, self.verbose, self.warm_start, self.momentum = tol, verbose, warm_start, momentum
        self.nesterovs_momentum, self.early_stopping = nesterovs_momentum, early_stopping
        self.validation_fraction, self.beta_1, self.beta_2 = validation_fraction, beta_1, beta_2
        self.epsilon, self.n_iter_no_change, self.device, self.backend = epsilon, n_iter_no_change, device, backend

    # -- checks ---------------------------------------------------------------------------------------
    def _check_params(self) -> list[int]:
        where = type(self).__name__
        if self.solver == "lbfgs":
            raise ValueError(f"{where}: solver='lbfgs' is not available in xpnet (it trains by minibatches); "
                             f"use solver='adam' or 'sgd', or sklearn.neural_network.{where} for L-BFGS")
        options = {"solver": ("adam", "sgd"), "activation": tuple(_ACTIVATIONS),
                   "learning_rate": ("constant", "invscaling", "adaptive")}
        for name, allowed in options.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{where}: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(isinstance(s, int) or hasattr(s, "__index__") for s in sizes) or min(sizes, default=1) < 1:
            raise ValueError(f"{where}: hidden_layer_sizes must be positive ints, got {self.hidden_layer_sizes!r}")
        n_iter = self.n_iter_no_change
        checks = [("alpha", self.alpha >= 0), ("learning_rate_init", self.learning_rate_init > 0),
                  ("power_t", self.power_t >= 0), ("max_iter", self.max_iter >= 1), ("tol", self.tol >= 0),
                  ("momentum", 0 <= self.momentum <= 1), ("validation_fraction", 0 <= self.validation_fraction < 1),
                  ("beta_1", 0 <= self.beta_1 < 1), ("beta_2", 0 <= self.beta_2 < 1), ("epsilon", self.epsilon > 0),
                  ("n_iter_no_change", n_iter >= 1 and (n_iter == math.inf or n_iter == int(n_iter))),
                  ("batch_size", self.batch_size == "auto" or (isinstance(self.batch_size, int)
                                                               and self.batch_size >= 1))]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{where}: {name}={getattr(self, name)!r} is out of range (see "
                                 f"sklearn.neural_network.{where} for the allowed values)")
        return [int(s) for s in sizes]

    # -- the model ------------------------------------------------------------------------------------
    def _new_model(self, units, rng):
        """Dense layers ``units[0] -> ... -> units[-1]``, the hidden ones followed by the activation,
        with scikit-learn's initial weights drawn from ``rng``."""
        layers = []
        for i in range(len(units) - 1):
            layers.append(Dense(units[i], units[i + 1]))
            if i < len(units) - 2:
                layers.append(_ACTIVATIONS[self.activation]())
        factor = 2.0 if self.activation == "logistic" else 6.0
        state = {}
        for i, layer in enumerate(layers):
            if isinstance(layer, Dense):
                bound = math.sqrt(factor / (layer.in_features + layer.out_features))
                state[f"{i}.W"] = rng.uniform(-bound, bound, (layer.in_features, layer.out_features))
                state[f"{i}.b"] = rng.uniform(-bound, bound, layer.out_features)
        return layers, state

    def _build(self, layers, state, seed):
        model = Sequential(layers, device=self.device, backend=self.backend, seed=seed, init=False)
        model.load_state_dict(state)
        return model

    def _optimizer_for(self):
        if self.solver == "adam":
            inner = Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)
        else:
            inner = SGD(self.learning_rate_init, momentum=self.momentum,
                        nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return _ScikitLearnStep(inner, self.alpha, self.epsilon)

    @property
    def coefs_(self) -> list:
        """The weight matrices ``(fan_in, fan_out)`` of each Dense layer, as NumPy copies."""
        check_is_fitted(self, "_model")
        return [_backend.to_numpy(layer.params["W"]).copy() for layer in self._dense()]

    @property
    def intercepts_(self) -> list:
        """The bias vectors ``(fan_out,)`` of each Dense layer, as NumPy copies."""
        check_is_fitted(self, "_model")
        return [_backend.to_numpy(layer.params["b"]).copy() for layer in self._dense()]

    def _dense(self):
        return [layer for layer in self._model.layers if isinstance(layer, Dense)]

    # -- training -------------------------------------------------------------------------------------
    def _fit(self, X, y, incremental: bool):
        hidden = self._check_params()
        where = f"{type(self).__name__}.{'partial_fit' if incremental else 'fit'}"
        if self.early_stopping and incremental:
            raise ValueError(f"{where}: partial_fit does not support early_stopping=True")
        first = not hasattr(self, "_model") or not (self.warm_start or incremental)
        X, y = self._validate(X, y, first, where)  # float32 X, encoded targets; sets the class attributes
        rng = check_random_state(self.random_state)
        if first:
            layers, state = self._new_model([X.shape[1], *hidden, self._n_outputs()], rng)
        X_val = y_val = None
        if self.early_stopping:
            classify = isinstance(self, ClassifierMixin)
            X, X_val, y, y_val = train_test_split(X, y, random_state=rng, test_size=self.validation_fraction,
                                                  stratify=y if classify else None)
            if X_val.shape[0] < 2:
                raise ValueError(f"{where}: the validation set is too small ({X_val.shape[0]} rows); increase "
                                 f"validation_fraction or the size of the data set")
        if first:
            self._model = self._build(layers, state, int(rng.randint(2**31 - 1)))
            self.n_layers_, self.n_outputs_ = len(hidden) + 2, self._n_outputs()
            self.n_iter_, self.t_, self.loss_curve_, self._no_improvement = 0, 0, [], 0
            self.best_loss_ = None if self.early_stopping else math.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -math.inf if self.early_stopping else None
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._optimizer_for()
        self._iterate(X, y, X_val, y_val, incremental)
        return self

    def _iterate(self, X, y, X_val, y_val, incremental):
        model, opt, n = self._model, self._optimizer, X.shape[0]
        dev = model.device
        X, y = dev.asarray(X), dev.asarray(y, None)  # once per fit: every epoch reuses them
        X_val = None if X_val is None else dev.asarray(X_val)
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(f"{type(self).__name__}: batch_size={self.batch_size} is larger than the "
                              f"{n} training samples; it is clipped to {n}", UserWarning, stacklevel=3)
            batch_size = min(self.batch_size, n)
        best, self.n_iter_ = None, 0  # scikit-learn counts the iterations of this call only (t_ goes on)
        for _ in range(self.max_iter):
            opt.start_epoch(n, batch_size)
            history = model.fit(X, y, loss=self._loss(), optimizer=opt, epochs=1, batch_size=batch_size,
                                shuffle=self.shuffle, verbose=0)
            penalty = float(_backend.to_numpy(opt.penalty)) if opt.alpha else 0.0
            self.loss_ = history.history["loss"][-1] / self._loss_scale() + 0.5 * opt.alpha * penalty / n
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if X_val is not None:
                score = self._val_score(model.predict(X_val), y_val)
                self.validation_scores_.append(score)
                if self.verbose:
                    print(f"Validation score: {score:f}")
                improved = score >= self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = {k: dev.xp.asarray(v, copy=True) for k, v in model.parameters().items()}
            else:
                improved = self.loss_ <= self.best_loss_ - self.tol
                self.best_loss_ = min(self.best_loss_, self.loss_)
            self._no_improvement = 0 if improved else self._no_improvement + 1
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                opt.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement > self.n_iter_no_change:
                what = "Validation score" if X_val is not None else "Training loss"
                if self.solver == "sgd" and self.learning_rate == "adaptive" and opt.lr > 1e-6:
                    opt.lr /= 5.0  # scikit-learn's adaptive rate: a fifth, until it falls below 1e-6
                    self._no_improvement = 0
                    if self.verbose:
                        print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                              f"consecutive epochs. Setting learning rate to {opt.lr:f}")
                else:
                    if self.verbose:
                        print(f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                              f"consecutive epochs. Stopping.")
                    break
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                              f"optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        if best is not None:
            model.load_state_dict(best)

    def _forward(self, X):
        """``(the model's outputs for X on its device, the float dtype of X)``: float64 and float32 inputs
        get outputs of their own dtype, as scikit-learn's estimator gives, though the model computes in float32."""
        check_is_fitted(self, "_model")
        X = validate_data(self, X, dtype=("float64", "float32"), reset=False)
        return self._model.predict(self._model.device.asarray(X)), X.dtype

    # -- pickling: the model's arrays travel as NumPy and are put back on the device when loaded ------
    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ gives the live __dict__, not a copy
        model = state.pop("_model", None)
        if model is not None:
            state["_model"] = (model.get_config(), model.state_dict(), model.rng, model.input_range)
            opt = copy.copy(state.pop("_optimizer"))
            opt.inner = copy.copy(opt.inner)
            opt.inner.state, opt.penalty = _map_arrays(opt.inner.state, lambda a: _backend.to_numpy(a).copy()), 0.0
            state["_optimizer"] = opt
        return state

    def __setstate__(self, state):
        saved = state.pop("_model", None)
        super().__setstate__(state)
        if saved is not None:
            config, weights, rng, span = saved
            self._model = self._build([_layer(c) for c in config["layers"]], weights, None)
            self._model.rng, self._model.input_range = rng, span
            dev = self._model.device
            self._optimizer.inner.state = _map_arrays(self._optimizer.inner.state, lambda a: dev.asarray(a, None))


def _layer(entry):
    kinds = {"Dense": Dense, **{cls.__name__: cls for cls in _ACTIVATIONS.values()}}
    return kinds[entry["class"]](**entry["config"])


def _map_arrays(obj, f):
    if isinstance(obj, dict):
        return {k: _map_arrays(v, f) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_arrays(v, f) for v in obj)
    return f(obj) if _backend.is_array(obj) else obj


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, as ``sklearn.neural_network.MLPClassifier``, trained by xpnet.

    ``k > 2`` classes: ``k`` softmax outputs and the cross-entropy; two classes: one logistic output.
    ``predict_proba`` gives ``(n, k)`` NumPy rows summing to 1 (two columns for two classes).

        >>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0, device="cpu")
        >>> clf.fit(X_train, y_train).score(X_test, y_test)
    """

    def fit(self, X, y):
        """Train on ``X`` ``(n, features)`` and labels ``y`` ``(n,)`` for up to ``max_iter`` epochs."""
        if not (self.warm_start and hasattr(self, "_model")):
            self.__dict__.pop("classes_", None)  # a new fit learns its classes afresh
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; the first call needs ``classes``, every label there will ever be."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("MLPClassifier.partial_fit: pass classes=[...] (all the labels) on the first "
                                 "call; later calls may leave it out")
            self.classes_ = unique_labels(classes)
        elif classes is not None and list(unique_labels(classes)) != list(self.classes_):
            raise ValueError(f"MLPClassifier.partial_fit: classes={list(classes)} differs from the classes of "
                             f"the first call, {list(self.classes_)}")
        return self._fit(X, y, incremental=True)

    def _validate(self, X, y, first, where):
        X, y = validate_data(self, X, y, dtype="float32", reset=first, multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"{where}: y is {kind}; xpnet's MLPClassifier takes one label per sample (binary "
                             f"or multiclass). For multilabel targets use sklearn.neural_network.MLPClassifier "
                             f"or sklearn.multioutput.MultiOutputClassifier(MLPClassifier())")
        if not hasattr(self, "classes_"):
            self.classes_ = unique_labels(y)
        else:
            unseen = sorted(set(unique_labels(y).tolist()) - set(self.classes_.tolist()))
            if unseen:
                raise ValueError(f"{where}: y has classes {unseen} that are not in classes_ "
                                 f"{self.classes_.tolist()} (set by the first fit or partial_fit)")
        if len(self.classes_) < 2:
            raise ValueError(f"{where}: y holds one class only ({self.classes_[0]!r}); a classifier needs "
                             f"samples of at least two classes")
        encoder = LabelEncoder()
        encoder.classes_ = self.classes_
        return X, encoder.transform(y).astype("int64")

    def _n_outputs(self):
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _loss(self):
        return BinaryCrossEntropy() if len(self.classes_) == 2 else SoftmaxCrossEntropy()

    def _loss_scale(self):
        return 1.0

    def _val_score(self, out, y_val):
        return accuracy_score(y_val, self._labels(out))

    def _labels(self, out):
        xp = _backend.device_of(out).xp
        index = xp.argmax(out, axis=1) if out.shape[1] > 1 else xp.astype(out[:, 0] > 0.0, xp.int64)
        return self.classes_[_backend.to_numpy(index)]

    def predict(self, X):
        """The most probable class of each row of ``X``, as a NumPy array of ``classes_``' labels."""
        return self._labels(self._forward(X)[0])

    def predict_proba(self, X):
        """Class probabilities ``(n, len(classes_))``, columns in the order of ``classes_``."""
        proba, dtype = self._proba(X)
        return _backend.to_numpy(proba).astype(dtype)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, computed on the device."""
        proba, dtype = self._proba(X)
        return _backend.to_numpy(_backend.device_of(proba).xp.log(proba)).astype(dtype)

    def _proba(self, X):
        out, dtype = self._forward(X)
        xp = _backend.device_of(out).xp
        if out.shape[1] == 1:  # one logistic output: P(classes_[1]) = sigmoid(z)
            p = sigmoid(out)
            return xp.concat([1.0 - p, p], axis=1), dtype
        return softmax(out), dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, as ``sklearn.neural_network.MLPRegressor``, trained by xpnet.

    Identity outputs, one per target column, and the squared error. ``predict`` gives ``(n,)`` for one
    target and ``(n, targets)`` for several, as NumPy float32.

        >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=100, random_state=0)
        >>> reg.fit(X, y).score(X, y)
    """

    def fit(self, X, y):
        """Train on ``X`` ``(n, features)`` and targets ``y`` ``(n,)`` or ``(n, targets)``."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing from the current weights."""
        return self._fit(X, y, incremental=True)

    def _validate(self, X, y, first, where):
        X, y = validate_data(self, X, y, dtype="float32", reset=first, multi_output=True, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = y.reshape(y.shape[0], -1)
        if not first and y.shape[1] != self.n_outputs_:
            raise ValueError(f"{where}: y has {y.shape[1]} target column(s) but the model was fitted with "
                             f"{self.n_outputs_}")
        self._targets = y.shape[1]
        return X, y.astype("float32")

    def _n_outputs(self):
        return self._targets

    def _loss(self):
        return MSE()

    def _loss_scale(self):
        # xpnet's MSE sums the halved squares over the outputs; scikit-learn's averages them
        return float(self.n_outputs_) if hasattr(self, "n_outputs_") else float(self._targets)

    def _val_score(self, out, y_val):
        return r2_score(y_val, _backend.to_numpy(out))

    def predict(self, X):
        """The network's outputs for ``X``: ``(n,)`` for one target, else ``(n, targets)``."""
        out, dtype = self._forward(X)
        out = _backend.to_numpy(out).astype(dtype)
        return out.reshape(-1) if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
