"""``MLPClassifier`` and ``MLPRegressor``: drop-in for scikit-learn's, trained by xpnet on any device.

The parameters, their defaults and the fitted attributes are scikit-learn's (1.6+), so these work in
``Pipeline``, ``GridSearchCV`` and ``cross_val_score`` and pass ``check_estimator``; ``device`` and
``backend`` pick where xpnet trains (what :func:`xpnet.device` takes: a string such as ``"cuda:0"`` or a
``Device``). The model is a :class:`~xpnet.Sequential` of ``Dense`` layers in the dtype of the first
fit's X, as scikit-learn's MLP: float32 for float32 X, float64 for float64 or integer X (float32 on a
device without float64: JAX without its 64-bit mode, Apple's MPS). Later fits (``warm_start``,
``partial_fit``) keep it. On a GPU, float32 X trains at float32 speed. What follows scikit-learn exactly
and where it differs:

- Initial weights: Glorot-uniform weights *and* biases, drawn from ``random_state`` in scikit-learn's
  order, so a given ``random_state`` starts from scikit-learn's own weights (rounded to float32 in a
  float32 model).
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
  ``solver="sgd"`` is :class:`xpnet.SGD` (Nesterov or not), its momentum buffer rescaled when an
  ``invscaling`` or ``adaptive`` rate changes, as scikit-learn's velocity holds the past rates. With
  ``shuffle=False`` the trained weights are scikit-learn's to float64 rounding, or float32 precision for
  float32 X (tests/test_sklearn.py).
- Outputs (``predict``, ``predict_proba``, ``coefs_``) are NumPy arrays whatever the device; predictions
  come in the input's float dtype, as scikit-learn's do. Like every xpnet model, ``predict`` warns about
  inputs far outside the range seen in training.
- Not supported, with an error that says so: ``solver="lbfgs"``, ``loss="poisson"``, multilabel targets,
  sparse input; ``fit`` takes no ``sample_weight``.

Importing this module imports scikit-learn (the ``sklearn`` extra); ``import xpnet`` does not.
"""

import re as _re

try:
    import sklearn as _sklearn
except ImportError:  # an extra: say how to install it, as the other extras do, rather than a bare "No module"
    raise ModuleNotFoundError("xpnet.sklearn needs scikit-learn 1.6 or later, which is not installed: "
                              "pip install 'xpnet[sklearn]' (or pip install 'scikit-learn>=1.6')",
                              name="sklearn") from None
if tuple(int(n) for n in _re.findall(r"\d+", _sklearn.__version__)[:2]) < (1, 6):
    # otherwise a puzzling "cannot import name 'validate_data'" from deep inside
    raise ImportError(f"xpnet.sklearn needs scikit-learn 1.6 or later (validate_data, __sklearn_tags__), but "
                      f"{_sklearn.__version__} is installed: pip install -U 'scikit-learn>=1.6'", name="sklearn")

from ._estimators import MLPClassifier, MLPRegressor, expected_failed_checks  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor", "expected_failed_checks"]
