"""``MLPClassifier`` and ``MLPRegressor``: targets, outputs and tags; the rest is in ``_base``."""

from __future__ import annotations

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from .. import backend as _backend
from ..layers import sigmoid, softmax
from ..losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from ._base import BaseMLP


def expected_failed_checks(estimator) -> dict:
    """The ``check_estimator`` checks these estimators are known to fail, with the reason, for
    ``check_estimator(est, expected_failed_checks=...)`` or ``parametrize_with_checks`` (scikit-learn 1.6
    moved this out of the estimator's tags). None now: the one there was (a float32 model's rounding in
    ``check_methods_subset_invariance``) went when the model took X's dtype, float64 in those checks."""
    return {}


class MLPClassifier(ClassifierMixin, BaseMLP):
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
        X, y = validate_data(self, X, y, dtype=("float64", "float32"), reset=first, multi_output=True)
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


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor, as ``sklearn.neural_network.MLPRegressor``, trained by xpnet.

    Identity outputs, one per target column, and ``loss="squared_error"`` (scikit-learn's other loss,
    ``"poisson"``, is refused). ``predict`` gives ``(n,)`` for one target and ``(n, targets)`` for several.
    (scikit-learn 1.7+ puts ``loss`` first among the positional parameters; here it is keyword-only, so
    ``MLPRegressor((64,))`` means hidden layers, as it did before 1.7.)

        >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=100, random_state=0)
        >>> reg.fit(X, y).score(X, y)
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error", solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, device=None, backend=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
            momentum=momentum, nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, device=device, backend=backend)
        self.loss = loss

    def fit(self, X, y):
        """Train on ``X`` ``(n, features)`` and targets ``y`` ``(n,)`` or ``(n, targets)``."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, continuing from the current weights."""
        return self._fit(X, y, incremental=True)

    def _validate(self, X, y, first, where):
        X, y = validate_data(self, X, y, dtype=("float64", "float32"), reset=first, multi_output=True,
                             y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = y.reshape(y.shape[0], -1)
        if not first and y.shape[1] != self.n_outputs_:
            raise ValueError(f"{where}: y has {y.shape[1]} target column(s) but the model was fitted with "
                             f"{self.n_outputs_}")
        self._targets = y.shape[1]
        return X, y.astype("float64")  # (fit casts X and y to the model's dtype)

    def _n_outputs(self):
        return self._targets

    def _check_params(self):
        if self.loss != "squared_error":
            raise ValueError(f"MLPRegressor: loss={self.loss!r} is not available in xpnet; use loss='squared_error' "
                             f"(or sklearn.neural_network.MLPRegressor for 'poisson')")
        return super()._check_params()

    def _loss(self):
        return MSE()

    def _loss_scale(self):
        # xpnet's MSE sums the halved squares over the outputs; scikit-learn's averages them
        return float(self.n_outputs_)

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
