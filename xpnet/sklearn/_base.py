"""What MLPClassifier and MLPRegressor share: the model, scikit-learn's step and the iteration loop."""

from __future__ import annotations

import copy
import math
import warnings

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import backend as _backend
from ..layers import Dense, Identity, ReLU, Sigmoid, Tanh
from ..model import Sequential
from ..optim import SGD, Adam
from ..validation import UnscaledInputWarning
from ._step import ScikitLearnStep

_ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}


class BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the model, the iteration loop."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, device=None, backend=None):
        # scikit-learn's rule: store the arguments as given; fit checks them
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.backend = backend

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

    def _device(self):
        return _backend.device(self.device, backend=self.backend)

    @staticmethod
    def _build(layers, state, seed, dtype, dev):
        model = Sequential(layers, device=dev, seed=seed, dtype=dtype, init=False)
        model.load_state_dict(state)
        return model

    def _optimizer_for(self):
        if self.solver == "adam":
            inner = Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)
        else:
            inner = SGD(self.learning_rate_init, momentum=self.momentum,
                        nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return ScikitLearnStep(inner, self.alpha, self.epsilon)

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
        X, y = self._validate(X, y, first, where)  # float X, encoded targets; sets the class attributes
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
            dev = self._device()  # once: "auto" says which it took
            self._model = self._build(layers, state, int(rng.randint(2**31 - 1)), _model_dtype(dev, X.dtype), dev)
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
        # once per fit: every epoch reuses them. A later fit (warm_start, partial_fit) of another dtype is cast
        # to the model's, the dtype of its first fit, as scikit-learn's weights keep theirs.
        dt = model.dtype
        X, y = dev.asarray(X, dt), dev.asarray(y, dt if y.dtype.kind == "f" else None)
        X_val = None if X_val is None else dev.asarray(X_val, dt)
        batch_size = self._batch_size(n)
        best, self.n_iter_ = None, 0  # scikit-learn counts the iterations of this call only (t_ goes on)
        for _ in range(self.max_iter):
            opt.start_epoch(n, batch_size)
            with warnings.catch_warnings():  # an estimator gets any tabular data: no advice about pixels
                warnings.simplefilter("ignore", UnscaledInputWarning)
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

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"{type(self).__name__}: batch_size={self.batch_size} is larger than the "
                          f"{n} training samples; it is clipped to {n}", UserWarning, stacklevel=4)
        return min(self.batch_size, n)

    def _forward(self, X):
        """``(the model's outputs for X on its device, the float dtype of X)``: float64 and float32 inputs
        get outputs of their own dtype, whatever dtype the model computes in (that of its first fit)."""
        check_is_fitted(self, "_model")
        X = validate_data(self, X, dtype=("float64", "float32"), reset=False)
        return self._model.predict(self._model.device.asarray(X, self._model.dtype)), X.dtype

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
            self._model = self._build([_layer(c) for c in config["layers"]], weights, None, config["dtype"],
                                      self._device())
            self._model.rng = rng
            self._model.trained_with(self._model.loss, span)  # a model just built: the range becomes span
            dev = self._model.device
            self._optimizer.inner.state = _map_arrays(self._optimizer.inner.state, lambda a: dev.asarray(a, None))


def _model_dtype(dev, X_dtype) -> str:
    """The model's dtype for a first fit on ``X``: X's own (float64 for ints, as ``validate_data`` gives), as
    scikit-learn's MLP follows X; float32 where the device holds no float64 (JAX without its 64-bit mode, a
    float64-less device), as scikit-learn's array API support falls back."""
    if X_dtype == "float32":
        return "float32"
    floats = dev.xp.__array_namespace_info__().dtypes(device=dev.native, kind="real floating")
    return "float64" if "float64" in floats else "float32"


def _layer(entry):
    kinds = {"Dense": Dense, **{cls.__name__: cls for cls in _ACTIVATIONS.values()}}
    return kinds[entry["class"]](**entry["config"])


def _map_arrays(obj, f):
    if isinstance(obj, dict):
        return {k: _map_arrays(v, f) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_arrays(v, f) for v in obj)
    return f(obj) if _backend.is_array(obj) else obj
